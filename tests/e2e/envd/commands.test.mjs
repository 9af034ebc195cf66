// sandbox.commands: run, background handles, stdin, kill, list, connect, envs, cwd, users, timeouts.
import assert from 'node:assert/strict'
import { before, describe, test } from 'node:test'
import {
  AuthenticationError,
  CommandExitError,
  InvalidArgumentError,
  NotFoundError,
  TimeoutError,
} from 'e2b'
import { createSandbox, HOME, INIT_ENVS, rejectsWith, sleep, T, uniq, waitFor } from './helpers.mjs'

let sbx
before(async () => {
  sbx = await createSandbox()
})

// Is a process whose command line contains `needle` still alive in the sandbox? Zombies count as
// gone (they have exited).
async function processAlive(needle) {
  const r = await sbx.commands.run(`ps -eo stat=,args= | grep -F -- ${JSON.stringify(needle)} | grep -v grep || true`)
  return r.stdout
    .split('\n')
    .filter((l) => l.trim() && !l.trim().startsWith('Z'))
    .some((l) => l.includes(needle))
}

describe('commands.run', () => {
  test('returns stdout, stderr and exit code', T, async () => {
    const r = await sbx.commands.run('echo out; echo err >&2')
    assert.equal(r.exitCode, 0)
    assert.equal(r.stdout, 'out\n')
    assert.equal(r.stderr, 'err\n')
    assert.ok(!r.error, `no error expected, got ${r.error}`)
  })

  test('calls onStdout and onStderr with the output', T, async () => {
    const out = []
    const err = []
    const r = await sbx.commands.run('for i in 1 2 3; do echo o$i; echo e$i >&2; sleep 0.05; done', {
      onStdout: (d) => out.push(d),
      onStderr: (d) => err.push(d),
    })
    assert.equal(out.join(''), 'o1\no2\no3\n')
    assert.equal(err.join(''), 'e1\ne2\ne3\n')
    assert.equal(r.stdout, 'o1\no2\no3\n')
    assert.equal(r.stderr, 'e1\ne2\ne3\n')
  })

  test('delivers large output completely and in order', T, async () => {
    const r = await sbx.commands.run('seq 1 100000')
    const lines = r.stdout.trimEnd().split('\n')
    assert.equal(lines.length, 100000)
    assert.equal(lines[0], '1')
    assert.equal(lines[99999], '100000')
  })

  test('passes multi-byte UTF-8 output through', T, async () => {
    const r = await sbx.commands.run("printf 'h\\xc3\\xa9llo \\xe2\\x9c\\x93\\n'")
    assert.equal(r.stdout, 'héllo ✓\n')
  })

  test('non-zero exit rejects with CommandExitError', T, async () => {
    const err = await rejectsWith(sbx.commands.run('echo partial; echo oops >&2; exit 3'), CommandExitError)
    assert.equal(err.exitCode, 3)
    assert.equal(err.stdout, 'partial\n')
    assert.equal(err.stderr, 'oops\n')
    assert.match(err.error ?? '', /exit status 3/)
  })

  test('output written just before exit is not lost', T, async () => {
    assert.equal((await sbx.commands.run('printf x')).stdout, 'x')
    const r = await sbx.commands.run("head -c 1000000 /dev/zero | tr '\\0' y; printf END")
    assert.equal(r.stdout.length, 1_000_003)
    assert.ok(r.stdout.endsWith('yEND'))
  })

  test('a command stdin is closed unless stdin:true (cat ends at once)', T, async () => {
    const r = await sbx.commands.run('cat; echo after-cat', { timeoutMs: 10_000 })
    assert.equal(r.stdout, 'after-cat\n')
  })

  test('runs many commands concurrently', T, async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => sbx.commands.run(`sleep 0.1; echo n${i}`))
    )
    results.forEach((r, i) => assert.equal(r.stdout, `n${i}\n`))
  })
})

describe('background commands', () => {
  test('background:true returns a handle; wait() gives the result', T, async () => {
    const h = await sbx.commands.run('sleep 0.3; echo done; echo warn >&2', { background: true })
    assert.ok(Number.isInteger(h.pid) && h.pid > 0, `pid ${h.pid}`)
    assert.equal(h.exitCode, undefined)
    const r = await h.wait()
    assert.equal(r.exitCode, 0)
    assert.equal(r.stdout, 'done\n')
    assert.equal(r.stderr, 'warn\n')
    assert.equal(h.exitCode, 0)
    assert.equal(h.stdout, 'done\n')
    assert.equal(h.stderr, 'warn\n')
  })

  test('wait() of a failing background command rejects with CommandExitError', T, async () => {
    const h = await sbx.commands.run('exit 7', { background: true })
    const err = await rejectsWith(h.wait(), CommandExitError)
    assert.equal(err.exitCode, 7)
    assert.equal(h.exitCode, 7)
  })

  test('stdin:true: sendStdin (string and bytes) and closeStdin', T, async () => {
    const h = await sbx.commands.run('cat', { background: true, stdin: true })
    await sbx.commands.sendStdin(h.pid, 'hello\n')
    await h.sendStdin(new TextEncoder().encode('wörld\n'))
    await sbx.commands.closeStdin(h.pid)
    const r = await h.wait()
    assert.equal(r.stdout, 'hello\nwörld\n')
  })

  test('handle.closeStdin ends a reader', T, async () => {
    const h = await sbx.commands.run('wc -c', { background: true, stdin: true })
    await h.sendStdin('12345')
    await h.closeStdin()
    const r = await h.wait()
    assert.equal(r.stdout.trim(), '5')
  })

  test('sendStdin to an unknown pid fails', T, async () => {
    await rejectsWith(sbx.commands.sendStdin(999_999, 'x'), NotFoundError)
  })

  test('kill returns true, the process ends, then kill returns false', T, async () => {
    const marker = `sleep 6${Math.floor(Math.random() * 1000) + 1000}`
    const h = await sbx.commands.run(marker, { background: true })
    assert.equal(await processAlive(marker), true, 'process should be running')
    assert.equal(await sbx.commands.kill(h.pid), true)
    const err = await rejectsWith(h.wait(), CommandExitError, 'wait after kill')
    assert.notEqual(err.exitCode, 0)
    await waitFor(async () => !(await processAlive(marker)), { what: `${marker} to disappear` })
    assert.equal(await sbx.commands.kill(h.pid), false)
  })

  test('handle.kill() kills the process', T, async () => {
    const h = await sbx.commands.run('sleep 600', { background: true })
    assert.equal(await h.kill(), true)
    await rejectsWith(h.wait(), CommandExitError)
  })

  test('kill of an unknown pid returns false', T, async () => {
    assert.equal(await sbx.commands.kill(999_999), false)
  })

  test('list shows a running command with cmd, args, envs and cwd', T, async () => {
    const tag = uniq('list')
    const h = await sbx.commands.run(`sleep 600 # ${tag}`, {
      background: true,
      envs: { LIST_VAR: tag },
      cwd: '/tmp',
    })
    try {
      const procs = await sbx.commands.list()
      const p = procs.find((x) => x.pid === h.pid)
      assert.ok(p, `pid ${h.pid} not in list ${JSON.stringify(procs)}`)
      assert.equal(p.cmd, '/bin/bash')
      assert.deepEqual(p.args, ['-l', '-c', `sleep 600 # ${tag}`])
      assert.equal(p.envs.LIST_VAR, tag)
      assert.equal(p.cwd, '/tmp')
    } finally {
      await h.kill()
    }
    await rejectsWith(h.wait(), CommandExitError)
    await waitFor(async () => !(await sbx.commands.list()).some((x) => x.pid === h.pid), {
      what: 'killed process to leave the list',
    })
  })

  test('connect to a running command receives its later output', T, async () => {
    const dir = `/tmp/${uniq('connect')}`
    await sbx.commands.run(`mkdir -p ${dir}`)
    const h = await sbx.commands.run(
      `echo before; while [ ! -f ${dir}/go ]; do sleep 0.05; done; echo after-connect; echo err-after >&2`,
      { background: true }
    )
    await waitFor(() => h.stdout.includes('before'), { what: 'first output' })
    const seen = []
    const c = await sbx.commands.connect(h.pid, { onStdout: (d) => seen.push(d) })
    assert.equal(c.pid, h.pid)
    await sbx.commands.run(`touch ${dir}/go`)
    const r = await c.wait()
    assert.equal(r.exitCode, 0)
    assert.match(r.stdout, /after-connect/)
    assert.match(r.stderr, /err-after/)
    assert.match(seen.join(''), /after-connect/)
    // The original handle still gets the end too.
    const r0 = await h.wait()
    assert.equal(r0.stdout, 'before\nafter-connect\n')
  })

  test('several connected handles all receive the output', T, async () => {
    const h = await sbx.commands.run('read line; echo "got $line"', { background: true, stdin: true })
    const a = await sbx.commands.connect(h.pid)
    const b = await sbx.commands.connect(h.pid)
    await h.sendStdin('ping\n')
    const [ra, rb, rh] = await Promise.all([a.wait(), b.wait(), h.wait()])
    for (const r of [ra, rb, rh]) assert.equal(r.stdout, 'got ping\n')
  })

  test('connect to an unknown pid fails with NotFoundError', T, async () => {
    await rejectsWith(sbx.commands.connect(999_999), NotFoundError)
  })

  test('disconnect() leaves the process running; connect() and kill it later', T, async () => {
    const h = await sbx.commands.run('sleep 600', { background: true })
    await h.disconnect()
    await sleep(200)
    assert.ok((await sbx.commands.list()).some((p) => p.pid === h.pid), 'process should survive disconnect')
    const c = await sbx.commands.connect(h.pid)
    assert.equal(await c.kill(), true)
    await rejectsWith(c.wait(), CommandExitError)
  })
})

describe('environment, cwd and users', () => {
  test('per-call envs apply and do not leak into the next call', T, async () => {
    const r = await sbx.commands.run('echo "$FOO|$BAR"', { envs: { FOO: 'foo value', BAR: 'b=2' } })
    assert.equal(r.stdout, 'foo value|b=2\n')
    const r2 = await sbx.commands.run('echo "[$FOO][$BAR]"')
    assert.equal(r2.stdout, '[][]\n')
  })

  test('global envs from /init are set; per-call envs override them', T, async () => {
    const r = await sbx.commands.run('echo "$KILN_E2E_GLOBAL $KILN_E2E_OVERRIDE"')
    assert.equal(r.stdout, `${INIT_ENVS.KILN_E2E_GLOBAL} ${INIT_ENVS.KILN_E2E_OVERRIDE}\n`)
    const r2 = await sbx.commands.run('echo "$KILN_E2E_OVERRIDE"', { envs: { KILN_E2E_OVERRIDE: 'per-call' } })
    assert.equal(r2.stdout, 'per-call\n')
    const r3 = await sbx.commands.run('echo "$KILN_E2E_OVERRIDE"')
    assert.equal(r3.stdout, 'global\n')
  })

  test('default cwd is the home of the default user', T, async () => {
    const r = await sbx.commands.run('pwd')
    assert.equal(r.stdout, `${HOME}\n`)
  })

  test('cwd per call (absolute and relative to home)', T, async () => {
    assert.equal((await sbx.commands.run('pwd', { cwd: '/tmp' })).stdout, '/tmp\n')
    const sub = uniq('cwd')
    await sbx.commands.run(`mkdir -p ${HOME}/${sub}`)
    assert.equal((await sbx.commands.run('pwd', { cwd: sub })).stdout, `${HOME}/${sub}\n`)
  })

  test('a missing cwd is an InvalidArgumentError', T, async () => {
    await rejectsWith(sbx.commands.run('pwd', { cwd: '/does/not/exist' }), InvalidArgumentError)
  })

  test('default user is "user" with HOME /home/user', T, async () => {
    const r = await sbx.commands.run('echo "$(whoami) $(id -u) $(id -g) $HOME $USER"')
    assert.equal(r.stdout, `user 1000 1000 ${HOME} user\n`)
  })

  test('user root', T, async () => {
    const r = await sbx.commands.run('echo "$(whoami) $(id -u) $HOME $USER"; pwd', { user: 'root' })
    assert.equal(r.stdout, 'root 0 /root root\n/root\n')
  })

  test('user "user" explicitly, and passwordless sudo works', T, async () => {
    const r = await sbx.commands.run('whoami; sudo -n whoami', { user: 'user' })
    assert.equal(r.stdout, 'user\nroot\n')
  })

  test('an unknown user is an AuthenticationError', T, async () => {
    await rejectsWith(sbx.commands.run('whoami', { user: 'no-such-user-e2e' }), AuthenticationError)
  })

  test('PATH is usable and files created belong to the user', T, async () => {
    const f = `/tmp/${uniq('owner')}`
    const r = await sbx.commands.run(`touch ${f}; stat -c '%U:%G %a' ${f}; command -v python3`)
    assert.equal(r.stdout, 'user:user 644\n/usr/bin/python3\n')
  })
})

describe('timeouts', () => {
  test('timeoutMs ends the command with TimeoutError and the process is gone', T, async () => {
    const marker = `sleep 7${Math.floor(Math.random() * 1000) + 1000}`
    const started = Date.now()
    const h = await sbx.commands.run(marker, { background: true, timeoutMs: 1500 })
    await rejectsWith(h.wait(), TimeoutError)
    const took = Date.now() - started
    assert.ok(took >= 1000 && took < 10_000, `timed out after ${took} ms`)
    await waitFor(async () => !(await processAlive(marker)), { timeoutMs: 5000, what: `${marker} to be killed` })
    assert.ok(!(await sbx.commands.list()).some((p) => p.pid === h.pid), 'timed-out process still listed')
  })

  test('timeoutMs on a foreground run rejects with TimeoutError', T, async () => {
    await rejectsWith(sbx.commands.run('sleep 30', { timeoutMs: 1000 }), TimeoutError)
  })

  test('timeoutMs:0 disables the deadline', T, async () => {
    const r = await sbx.commands.run('sleep 0.2; echo fine', { timeoutMs: 0 })
    assert.equal(r.stdout, 'fine\n')
  })
})
