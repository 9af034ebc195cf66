// The E2B SDK against kilnd: sandbox lifecycle through the control API, commands and files
// through the proxy. E2B_API_URL and E2B_SANDBOX_URL both point at kilnd.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox, SandboxNotFoundError } from 'e2b'
import { startKilnd, waitFor, sandboxProcsFile, sandboxInitPid, T } from './harness.mjs'

let kilnd
let opts

before(async () => {
  kilnd = await startKilnd(['--pool-size', '2'])
  opts = kilnd.env()
})

after(async () => {
  await kilnd?.stop()
  kilnd?.cleanup()
})

test('create with metadata, envs and timeout; getInfo reports them', T, async () => {
  const sbx = await Sandbox.create('base', {
    ...opts, metadata: { suite: 'lifecycle', owner: 'alice' }, envs: { GREETING: 'hi there' }, timeoutMs: 120_000,
  })
  try {
    assert.match(sbx.sandboxId, /^[a-z0-9]+$/)
    const info = await sbx.getInfo()
    assert.equal(info.sandboxId, sbx.sandboxId)
    assert.equal(info.templateId, 'base')
    assert.equal(info.state, 'running')
    assert.deepEqual(info.metadata, { suite: 'lifecycle', owner: 'alice' })
    const life = info.endAt.getTime() - info.startedAt.getTime()
    assert.ok(life > 115_000 && life <= 121_000, `end - start = ${life} ms`)
    assert.ok(info.cpuCount >= 1 && info.memoryMB > 0)
    const r = await sbx.commands.run('echo "$GREETING from $(whoami) in $PWD"')
    assert.equal(r.stdout, 'hi there from user in /home/user\n')
  } finally {
    await sbx.kill()
  }
})

test('isRunning before and after kill; kill of an unknown id is false', T, async () => {
  const sbx = await Sandbox.create('base', opts)
  assert.equal(await sbx.isRunning(), true)
  await sbx.kill()
  assert.equal(await sbx.isRunning(), false)
  assert.equal(await Sandbox.kill(sbx.sandboxId, opts), false)
  assert.equal(await Sandbox.kill('inosuchsandbox0000000', opts), false)
  await assert.rejects(Sandbox.getInfo(sbx.sandboxId, opts), (e) => e instanceof SandboxNotFoundError)
  await assert.rejects(Sandbox.connect(sbx.sandboxId, opts), (e) => e.name === 'SandboxNotFoundError')
})

test('a sandbox past its timeout is gone within a second', T, async () => {
  const sbx = await Sandbox.create('base', { ...opts, timeoutMs: 2_000 })
  const info = await sbx.getInfo()
  assert.equal(await sbx.isRunning(), true)
  const gone = await waitFor(async () => !(await sbx.isRunning()) && Date.now(), { timeoutMs: 10_000, what: 'timeout kill' })
  assert.ok(gone - info.endAt.getTime() < 1_000, `gone ${gone - info.endAt.getTime()} ms after its end time`)
  assert.equal(await Sandbox.kill(sbx.sandboxId, opts), false)
})

test('setTimeout shortens and extends; connect never shortens', T, async () => {
  const sbx = await Sandbox.create('base', { ...opts, timeoutMs: 60_000 })
  try {
    await sbx.setTimeout(300_000)
    let info = await sbx.getInfo()
    let left = info.endAt.getTime() - Date.now()
    assert.ok(left > 290_000 && left <= 301_000, `left ${left}`)
    // connect with a shorter timeout keeps the later end
    const again = await Sandbox.connect(sbx.sandboxId, { ...opts, timeoutMs: 10_000 })
    info = await again.getInfo()
    left = info.endAt.getTime() - Date.now()
    assert.ok(left > 290_000, `connect shortened the end: ${left}`)
    const r = await again.commands.run('echo connected')
    assert.equal(r.stdout, 'connected\n')
    await sbx.setTimeout(5_000)
    info = await sbx.getInfo()
    left = info.endAt.getTime() - Date.now()
    assert.ok(left > 3_000 && left <= 5_100, `left ${left}`)
  } finally {
    await sbx.kill()
  }
})

test('list: metadata filter, state filter, pagination newest first', T, async () => {
  const tag = `t${process.pid}${Date.now()}`
  const made = []
  try {
    for (let i = 0; i < 3; i++) {
      made.push(await Sandbox.create('base', { ...opts, metadata: { tag, n: String(i) } }))
    }
    const other = await Sandbox.create('base', { ...opts, metadata: { tag: 'other' } })
    made.push(other)
    const all = await Sandbox.list({ ...opts, query: { metadata: { tag } } }).nextItems()
    assert.deepEqual(all.map((s) => s.metadata.n).sort(), ['0', '1', '2'])
    const one = await Sandbox.list({ ...opts, query: { metadata: { tag, n: '1' } } }).nextItems()
    assert.equal(one.length, 1)
    assert.equal(one[0].sandboxId, made[1].sandboxId)
    assert.equal(one[0].state, 'running')

    const pager = Sandbox.list({ ...opts, query: { metadata: { tag } }, limit: 1 })
    const seen = []
    while (pager.hasNext) {
      const page = await pager.nextItems()
      assert.ok(page.length <= 1)
      seen.push(...page.map((s) => s.sandboxId))
    }
    assert.deepEqual(seen, [made[2].sandboxId, made[1].sandboxId, made[0].sandboxId])

    await made[0].kill()
    const running = await Sandbox.list({ ...opts, query: { metadata: { tag }, state: ['running'] } }).nextItems()
    assert.deepEqual(running.map((s) => s.sandboxId).sort(), [made[1].sandboxId, made[2].sandboxId].sort())
    const paused = await Sandbox.list({ ...opts, query: { metadata: { tag }, state: ['paused'] } }).nextItems()
    assert.deepEqual(paused, [])
  } finally {
    for (const s of made) await Sandbox.kill(s.sandboxId, opts)
  }
})

test('commands and files through the proxy', T, async () => {
  const sbx = await Sandbox.create('base', opts)
  try {
    await sbx.files.write('/home/user/hello.txt', 'hello through kilnd\n')
    assert.equal(await sbx.files.read('/home/user/hello.txt'), 'hello through kilnd\n')
    const entries = await sbx.files.list('/home/user')
    assert.ok(entries.some((e) => e.name === 'hello.txt'))
    const big = 'x'.repeat(3 * 1024 * 1024)
    await sbx.files.write('/tmp/big', big)
    const back = await sbx.files.read('/tmp/big')
    assert.equal(back.length, big.length)
    const r = await sbx.commands.run('wc -c < /tmp/big; id -un; hostname')
    assert.equal(r.stdout, `${big.length}\nuser\nsandbox\n`)
    const root = await sbx.commands.run('id -u', { user: 'root' })
    assert.equal(root.stdout, '0\n')
    let out = ''
    const h = await sbx.commands.run('for i in 1 2 3; do echo line$i; done; exit 3', {
      background: true, onStdout: (d) => { out += d },
    })
    const res = await h.wait().catch((e) => e.result ?? e)
    assert.equal(res.exitCode, 3)
    assert.equal(out, 'line1\nline2\nline3\n')
  } finally {
    await sbx.kill()
  }
})

test('metrics', T, async () => {
  const sbx = await Sandbox.create('base', opts)
  try {
    await sbx.commands.run('head -c 20000000 /dev/urandom | sha256sum > /dev/null')
    const metrics = await waitFor(async () => {
      const m = await sbx.getMetrics()
      return m.length >= 2 && m
    }, { timeoutMs: 15_000, what: 'two metric samples' })
    const last = metrics[metrics.length - 1]
    assert.ok(last.timestamp instanceof Date)
    assert.ok(last.memTotal > 0 && last.memUsed > 0 && last.memUsed <= last.memTotal)
    assert.ok(last.diskTotal > 0)
    assert.ok(last.cpuCount >= 1)
    const before = await sbx.getMetrics({ start: new Date(Date.now() - 3600_000), end: new Date(Date.now() - 1800_000) })
    assert.deepEqual(before, [])
  } finally {
    await sbx.kill()
  }
})

test('a user port is reached through header and host routing', T, async () => {
  const sbx = await Sandbox.create('base', opts)
  try {
    await sbx.files.write('/home/user/www/index.html', 'served from the sandbox')
    await sbx.commands.run('cd /home/user/www && python3 -m http.server 8080 --bind 127.0.0.1', { background: true, timeoutMs: 0 })
    const byHeader = await waitFor(async () => {
      const r = await fetch(`${kilnd.url}/index.html`, {
        headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '8080' },
      })
      return r.status === 200 && r
    }, { what: 'http.server in the sandbox' })
    assert.equal(await byHeader.text(), 'served from the sandbox')
    // Host routing: "<port>-<id>.<domain>", as sandbox.getHost(8080) builds it.
    const host = sbx.getHost(8080)
    assert.ok(host.startsWith(`8080-${sbx.sandboxId}.`))
    const port = new URL(kilnd.url).port
    const res = await rawGet(port, host, '/index.html')
    assert.match(res, /^HTTP\/1\.1 200/)
    assert.match(res, /served from the sandbox/)
    // A closed port: 502 JSON saying so.
    const closed = await fetch(`${kilnd.url}/`, { headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '8081' } })
    assert.equal(closed.status, 502)
    const body = await closed.json()
    assert.equal(body.code, 502)
    assert.match(body.message, /port is not open/)
  } finally {
    await sbx.kill()
  }
})

test('the proxy: 502 for unknown sandboxes, agent control routes unreachable', T, async () => {
  const r = await fetch(`${kilnd.url}/health`, { headers: { 'E2b-Sandbox-Id': 'inosuch', 'E2b-Sandbox-Port': '49983' } })
  assert.equal(r.status, 502)
  assert.deepEqual(await r.json(), { sandboxId: 'inosuch', message: 'The sandbox was not found', code: 502 })
  const sbx = await Sandbox.create('base', opts)
  try {
    const init = await fetch(`${kilnd.url}/init`, {
      method: 'POST', body: JSON.stringify({ accessToken: '' }),
      headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '49983', 'Content-Type': 'application/json' },
    })
    assert.equal(init.status, 404)
    // The token still protects the agent.
    const noToken = await fetch(`${kilnd.url}/envs`, { headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '49983' } })
    assert.equal(noToken.status, 401)
    assert.equal((await sbx.commands.run('echo still')).stdout, 'still\n')
  } finally {
    await sbx.kill()
  }
})

test('the control API: auth and error bodies', T, async () => {
  const noKey = await fetch(`${kilnd.url}/v2/sandboxes`)
  assert.equal(noKey.status, 401)
  assert.equal((await noKey.json()).code, 401)
  const bad = await fetch(`${kilnd.url}/v2/sandboxes`, { method: 'POST', body: '{nope', headers: { 'X-API-Key': opts.apiKey } })
  assert.equal(bad.status, 400)
  assert.equal((await bad.json()).code, 400)
  const tmpl = await fetch(`${kilnd.url}/v2/sandboxes`, {
    method: 'POST', body: JSON.stringify({ templateID: 'no-such-template' }), headers: { 'X-API-Key': opts.apiKey },
  })
  assert.equal(tmpl.status, 404)
  const types = await fetch(`${kilnd.url}/v2/sandboxes`, {
    method: 'POST', body: JSON.stringify({ templateID: 'base', timeout: 'soon' }), headers: { 'X-API-Key': opts.apiKey },
  })
  assert.equal(types.status, 400)
})

// GET with an explicit Host header (fetch does not allow setting Host).
async function rawGet(port, host, path) {
  const net = await import('node:net')
  return await new Promise((resolve, reject) => {
    const s = net.connect(Number(port), '127.0.0.1', () => {
      s.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)
    })
    let data = ''
    s.setEncoding('utf8')
    s.on('data', (d) => { data += d })
    s.on('end', () => resolve(data))
    s.on('error', reject)
  })
}

test('a sandbox whose init dies (e.g. killed from the host) is retired', T, async () => {
  const sbx = await Sandbox.create('base', opts)
  assert.ok(sandboxProcsFile(kilnd.name, sbx.sandboxId), 'the sandbox has a cgroup')
  const init = sandboxInitPid(kilnd.name, sbx.sandboxId)
  assert.ok(init, 'found the sandbox init on the host')
  process.kill(init, 'SIGKILL')
  await waitFor(async () => {
    try {
      await Sandbox.getInfo(sbx.sandboxId, opts)
      return false
    } catch (e) {
      return e instanceof SandboxNotFoundError
    }
  }, { what: 'the dead sandbox to be retired' })
  assert.equal(await sbx.isRunning(), false)
})
