// Pause and resume through the SDK, and what survives a kilnd that is killed with SIGKILL.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { Sandbox } from 'e2b'
import { startKilnd, waitFor, hostLeftovers, sandboxPids, alive, RUNTIME, T } from './harness.mjs'

let kilnd
let opts

before(async () => {
  kilnd = await startKilnd(['--pool-size', '1'])
  opts = kilnd.env()
})

after(async () => {
  await kilnd?.stop()
  kilnd?.cleanup()
})

// Host processes running `sleep <arg>` (sandbox processes are visible from the host).
function sleepers(arg) {
  const out = execFileSync('ps', ['-eo', 'args='], { encoding: 'utf8' })
  return out.split('\n').filter((l) => l.trim() === `sleep ${arg}`).length
}

test('pause and resume keep files, env vars and processes', T, async () => {
  const sbx = await Sandbox.create('base', { ...opts, envs: { KEPT: 'across-pause' } })
  try {
    await sbx.files.write('/home/user/state.txt', 'before pause')
    await sbx.commands.run('rm /etc/hostname; mkdir -p /home/user/d && echo x > /home/user/d/f', { user: 'root' })
    const bg = await sbx.commands.run('sleep 600', { background: true, timeoutMs: 0 })
    assert.equal(await sbx.pause(), true)
    assert.equal(await sbx.isRunning(), false)
    assert.equal((await sbx.getInfo()).state, 'paused')
    const listed = await Sandbox.list({ ...opts, query: { state: ['paused'] } }).nextItems()
    assert.ok(listed.some((s) => s.sandboxId === sbx.sandboxId && s.state === 'paused'))
    // Pausing again is a no-op that says so.
    assert.equal(await Sandbox.pause(sbx.sandboxId, opts), false)

    const resumed = await Sandbox.connect(sbx.sandboxId, opts)
    assert.equal(await resumed.isRunning(), true)
    assert.equal((await resumed.getInfo()).state, 'running')
    assert.equal(await resumed.files.read('/home/user/state.txt'), 'before pause')
    assert.equal((await resumed.commands.run('echo $KEPT')).stdout, 'across-pause\n')
    const procs = await resumed.commands.list()
    assert.ok(procs.some((p) => p.pid === bg.pid), 'the background process survived the pause')
    assert.equal((await resumed.commands.run('test -e /etc/hostname; echo $?')).stdout, '1\n')
  } finally {
    await Sandbox.kill(sbx.sandboxId, opts)
  }
})

test('a sandbox created with onTimeout: pause is paused at its timeout, not killed', T, async () => {
  const sbx = await Sandbox.create('base', { ...opts, timeoutMs: 2_000, lifecycle: { onTimeout: 'pause' } })
  try {
    assert.equal((await sbx.getInfo()).lifecycle?.onTimeout, 'pause')
    await sbx.files.write('/home/user/kept.txt', 'kept at timeout')
    await waitFor(async () => (await Sandbox.getInfo(sbx.sandboxId, opts)).state === 'paused',
      { timeoutMs: 15_000, what: 'the timeout to pause the sandbox' })
    assert.equal(await sbx.isRunning(), false)
    const again = await Sandbox.connect(sbx.sandboxId, { ...opts, timeoutMs: 60_000 })
    assert.equal(await again.files.read('/home/user/kept.txt'), 'kept at timeout')
  } finally {
    await Sandbox.kill(sbx.sandboxId, opts)
  }
})

test('autoResume: traffic to a paused sandbox resumes it', T, async () => {
  const sbx = await Sandbox.create('base', { ...opts, lifecycle: { onTimeout: 'pause', autoResume: true } })
  try {
    assert.equal((await sbx.getInfo()).lifecycle?.autoResume, true)
    await sbx.files.write('/home/user/note.txt', 'before')
    assert.equal(await sbx.pause(), true)
    assert.equal((await Sandbox.getInfo(sbx.sandboxId, opts)).state, 'paused')
    // No connect(): the command itself wakes the sandbox through the proxy.
    const r = await sbx.commands.run('cat /home/user/note.txt')
    assert.equal(r.stdout, 'before')
    assert.equal((await Sandbox.getInfo(sbx.sandboxId, opts)).state, 'running')
  } finally {
    await Sandbox.kill(sbx.sandboxId, opts)
  }
  // Without autoResume a paused sandbox stays paused: 502 for traffic.
  const plain = await Sandbox.create('base', opts)
  try {
    await plain.pause()
    assert.equal(await plain.isRunning(), false)
    assert.equal((await Sandbox.getInfo(plain.sandboxId, opts)).state, 'paused')
  } finally {
    await Sandbox.kill(plain.sandboxId, opts)
  }
})

test('kilnd killed with SIGKILL: nothing left behind, paused sandboxes survive with their files', { timeout: 120_000 }, async () => {
  const keep = await Sandbox.create('base', { ...opts, envs: { KEPT: 'across-restart' } })
  await keep.files.write('/home/user/survivor.txt', 'still here')
  assert.equal(await keep.pause(), true)
  const lost = await Sandbox.create('base', opts)
  await lost.commands.run('sleep 6061', { background: true, timeoutMs: 0 })
  // bash -l -c execs sleep a moment after the command started (ns: visible on the host).
  if (RUNTIME === 'ns') await waitFor(() => sleepers('6061') === 1, { what: 'sleep 6061 in the sandbox' })
  const lostPids = sandboxPids(kilnd.name, lost.sandboxId)
  assert.ok(lostPids.length > 0, 'the sandbox has processes on the host')

  await kilnd.stop('SIGKILL')
  // The sandboxes' processes were children of kilnd's sandboxes; the next start must clean them.
  await kilnd.start()
  opts = kilnd.env()  // a new port; same data dir and API key

  // The restarted kilnd removed what the dead one left: the lost sandbox's processes are gone.
  assert.equal(sleepers('6061'), 0)
  assert.deepEqual(lostPids.filter(alive), [], 'processes of the lost sandbox are left')
  const parent = RUNTIME === 'vm' ? `kiln-${kilnd.name}-vm` : `kiln-${kilnd.name}`
  for (const h of ['unified', 'memory', 'pids', 'cpu']) {
    assert.equal(existsSync(`/sys/fs/cgroup/${h}/${parent}/${lost.sandboxId}`), false, `${h} cgroup left`)
  }
  const left = hostLeftovers(kilnd.name)
  assert.equal(await Sandbox.kill(lost.sandboxId, opts), false, 'a running sandbox cannot survive kilnd')
  const info = await Sandbox.getInfo(keep.sandboxId, opts)
  assert.equal(info.state, 'paused')
  const resumed = await Sandbox.connect(keep.sandboxId, opts)
  assert.equal(await resumed.files.read('/home/user/survivor.txt'), 'still here')
  assert.equal((await resumed.commands.run('echo $KEPT')).stdout, 'across-restart\n')
  await resumed.kill()
  assert.ok(left.mounts.length === 0, `mounts left: ${JSON.stringify(left.mounts)}`)
})

test('SIGTERM stops kilnd cleanly: no sandbox processes, veths or cgroups remain', { timeout: 120_000 }, async () => {
  const sbx = await Sandbox.create('base', opts)
  await sbx.commands.run('sleep 600', { background: true, timeoutMs: 0 })
  await kilnd.stop('SIGTERM')
  // A veth goes when its namespace is torn down, which the kernel finishes asynchronously (it
  // can take seconds on a busy host).
  const left = await waitFor(() => {
    const l = hostLeftovers(kilnd.name)
    return l.veths.length === 0 && l
  }, { timeoutMs: 15_000, what: 'sandbox veths to go' })
  assert.deepEqual(left.mounts, [])
  for (const c of left.cgroups) assert.equal(c.procs, '', `processes left in ${c.dir}`)
  await kilnd.start()
  opts = kilnd.env()
  assert.equal(await Sandbox.kill(sbx.sandboxId, opts), false)
})
