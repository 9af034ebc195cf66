// sandbox.pty: create, sendInput, resize, kill, connect.
import assert from 'node:assert/strict'
import { before, describe, test } from 'node:test'
import { CommandExitError } from 'e2b'
import { createSandbox, rejectsWith, T, waitFor } from './helpers.mjs'

let sbx
before(async () => {
  sbx = await createSandbox()
})

// A terminal whose output is collected as text.
async function openPty(opts = {}) {
  const decoder = new TextDecoder()
  const term = { text: '', chunks: 0 }
  const handle = await sbx.pty.create({
    cols: 80,
    rows: 24,
    onData: (data) => {
      assert.ok(data instanceof Uint8Array)
      term.chunks++
      term.text += decoder.decode(data, { stream: true })
    },
    ...opts,
  })
  term.handle = handle
  term.send = (s) => sbx.pty.sendInput(handle.pid, new TextEncoder().encode(s))
  // Waits for a regex in the output produced after `from` (an offset into term.text).
  term.expect = (re, from = 0, timeoutMs = 10_000) =>
    waitFor(() => re.exec(term.text.slice(from)), { timeoutMs, what: `${re} in pty output` })
  return term
}

describe('pty', () => {
  test('create runs an interactive shell on a terminal; sendInput; exit ends it', T, async () => {
    const t = await openPty()
    assert.ok(t.handle.pid > 0)
    // The computed marker appears only in the output, never in the echoed input.
    await t.send('echo pty-$((6*7)); tty\n')
    await t.expect(/pty-42/)
    await t.expect(/\/dev\/pts\/\d+/)
    await t.send('exit 0\n')
    const r = await t.handle.wait()
    assert.equal(r.exitCode, 0)
    assert.ok(t.chunks > 0)
  })

  test('create with user, cwd and envs; TERM and locale defaults', T, async () => {
    const t = await openPty({ user: 'root', cwd: '/tmp', envs: { PTY_VAR: 'pv' } })
    await t.send('echo "A$((1+1))B:$(whoami):$(pwd):$PTY_VAR:$TERM:$LANG"\n')
    await t.expect(/A2B:root:\/tmp:pv:xterm-256color:C\.UTF-8/)
    await t.send('exit\n')
    await t.handle.wait()
  })

  test('resize changes the terminal size (stty size)', T, async () => {
    const t = await openPty({ cols: 80, rows: 24 })
    await t.send('stty size\n')
    await t.expect(/24 80/)
    const mark = t.text.length
    await sbx.pty.resize(t.handle.pid, { cols: 120, rows: 40 })
    await t.send('stty size\n')
    await t.expect(/40 120/, mark)
    await t.send('exit\n')
    await t.handle.wait()
  })

  test('kill returns true and ends the terminal; then false', T, async () => {
    const t = await openPty()
    await t.send('echo ready-$((2+3))\n')
    await t.expect(/ready-5/)
    assert.equal(await sbx.pty.kill(t.handle.pid), true)
    const err = await rejectsWith(t.handle.wait(), CommandExitError, 'wait after pty kill')
    assert.notEqual(err.exitCode, 0)
    await waitFor(async () => !(await sbx.commands.list()).some((p) => p.pid === t.handle.pid), {
      what: 'killed pty to leave the list',
    })
    assert.equal(await sbx.pty.kill(t.handle.pid), false)
  })

  test('pty sessions appear in commands.list with their config', T, async () => {
    const t = await openPty()
    try {
      const p = (await sbx.commands.list()).find((x) => x.pid === t.handle.pid)
      assert.ok(p, 'pty not listed')
      assert.equal(p.cmd, '/bin/bash')
      assert.deepEqual(p.args, ['-i', '-l'])
      assert.equal(p.envs.TERM, 'xterm-256color')
    } finally {
      await sbx.pty.kill(t.handle.pid)
    }
  })

  test('connect to a pty receives later output; input from either side works', T, async () => {
    const t = await openPty()
    await t.send('echo first-$((1+0))\n')
    await t.expect(/first-1/)

    const decoder = new TextDecoder()
    let seen = ''
    const c = await sbx.pty.connect(t.handle.pid, {
      onData: (d) => {
        seen += decoder.decode(d, { stream: true })
      },
    })
    assert.equal(c.pid, t.handle.pid)
    await t.send('echo second-$((1+1))\n')
    await waitFor(() => /second-2/.test(seen), { what: 'output on the connected handle' })
    await t.expect(/second-2/)

    await t.send('exit 3\n')
    const err = await rejectsWith(c.wait(), CommandExitError, 'connected handle wait')
    assert.equal(err.exitCode, 3)
    await rejectsWith(t.handle.wait(), CommandExitError, 'original handle wait')
  })

  test('the pty carries raw bytes (Ctrl-C interrupts the foreground job)', T, async () => {
    const t = await openPty()
    await t.send('sleep 100; echo not-$((0+0))-interrupted\n')
    await new Promise((r) => setTimeout(r, 300))
    const mark = t.text.length
    await t.send('\x03')
    await t.send('echo int-$((4*4))\n')
    await t.expect(/int-16/, mark)
    assert.doesNotMatch(t.text, /not-0-interrupted/)
    await t.send('exit\n')
    await t.handle.wait()
  })
})
