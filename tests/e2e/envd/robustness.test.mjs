// Bad input the SDK never sends, sent with raw fetch/sockets: the agent must answer with a clear
// error and keep serving. Also isRunning().
import assert from 'node:assert/strict'
import net from 'node:net'
import { after, before, describe, test } from 'node:test'
import { AuthenticationError, FileNotFoundError } from 'e2b'
import {
  basicAuth,
  connectError,
  createSandbox,
  ENVD_URL,
  envelope,
  rejectsWith,
  stream,
  T,
  unary,
  uniq,
} from './helpers.mjs'

let sbx
before(async () => {
  sbx = await createSandbox()
})

// After each bad request the agent must still work end to end.
async function assertServing() {
  assert.equal(await sbx.isRunning(), true)
  const r = await sbx.commands.run('echo alive')
  assert.equal(r.stdout, 'alive\n')
}

after(async () => {
  await assertServing()
})

describe('isRunning', () => {
  test('isRunning() is true while the agent serves /health', T, async () => {
    assert.equal(await sbx.isRunning(), true)
    const h = await fetch(`${ENVD_URL}/health`)
    assert.equal(h.status, 204)
  })
})

describe('malformed Connect requests', () => {
  test('a truncated envelope on a streaming RPC is an error', T, async () => {
    const r = await stream('process.Process/Start', Buffer.from([0, 0, 0]))
    assert.ok(connectError(r), `expected an error, got ${r.status} ${r.buf.toString()}`)
    await assertServing()
  })

  test('an envelope whose length exceeds the body is an error', T, async () => {
    const head = Buffer.from([0, 0x10, 0, 0, 0]) // claims 256 MiB
    const r = await stream('process.Process/Start', Buffer.concat([head, Buffer.from('{"process":{}}')]))
    assert.ok(connectError(r), `expected an error, got ${r.status} ${r.buf.toString()}`)
    await assertServing()
  })

  test('invalid JSON inside a valid envelope is invalid_argument', T, async () => {
    const r = await stream('process.Process/Start', envelope(0, '{"process": nope'))
    assert.equal(connectError(r), 'invalid_argument', r.buf.toString())
    await assertServing()
  })

  test('a compressed-flag envelope is refused', T, async () => {
    const r = await stream('process.Process/Start', envelope(1, 'xx'))
    assert.ok(connectError(r), r.buf.toString())
    await assertServing()
  })

  test('Start without a process config is invalid_argument', T, async () => {
    const r = await stream('process.Process/Start', envelope(0, '{}'))
    assert.equal(connectError(r), 'invalid_argument', r.buf.toString())
  })

  test('invalid JSON on a unary RPC is 400 invalid_argument', T, async () => {
    const r = await unary('process.Process/List', '{not json')
    assert.equal(r.status, 400, r.text)
    assert.equal(r.json?.code, 'invalid_argument')
    assert.equal(typeof r.json?.message, 'string')
    await assertServing()
  })

  test('wrong field types are invalid_argument', T, async () => {
    const r = await unary('process.Process/SendSignal', { process: { pid: 'abc' }, signal: 'SIGNAL_SIGKILL' })
    assert.equal(r.status, 400, r.text)
    assert.equal(r.json?.code, 'invalid_argument')
    const s = await unary('filesystem.Filesystem/Stat', { path: 42 })
    assert.equal(s.status, 400, s.text)
    assert.equal(s.json?.code, 'invalid_argument')
    await assertServing()
  })

  test('unknown pid on SendSignal is 404 not_found', T, async () => {
    const r = await unary('process.Process/SendSignal', { process: { pid: 999999 }, signal: 'SIGNAL_SIGKILL' })
    assert.equal(r.status, 404, r.text)
    assert.equal(r.json?.code, 'not_found')
  })

  test('an unknown RPC is 404', T, async () => {
    const r = await unary('process.Process/NoSuchMethod', {})
    assert.equal(r.status, 404, r.text)
    const s = await unary('nope.Service/Call', {})
    assert.equal(s.status, 404, s.text)
  })

  test('a huge unary body is refused without taking the agent down', T, async () => {
    const big = JSON.stringify({ path: 'x'.repeat(16 << 20) })
    const r = await unary('filesystem.Filesystem/Stat', big).catch((e) => ({ status: 0, text: String(e) }))
    assert.notEqual(r.status, 200, r.text?.slice(0, 200))
    await assertServing()
  })
})

describe('users and paths from untrusted input', () => {
  test('unknown user via Basic auth: SDK gets AuthenticationError, raw gets 401 unauthenticated', T, async () => {
    await rejectsWith(sbx.files.read('/etc/hostname', { user: 'ghost-user' }), AuthenticationError, 'files.read')
    await rejectsWith(sbx.files.list('/tmp', { user: 'ghost-user' }), AuthenticationError, 'files.list')
    await rejectsWith(sbx.commands.run('true', { user: 'ghost-user' }), AuthenticationError, 'commands.run')
    const r = await unary('filesystem.Filesystem/Stat', { path: '/tmp' }, { headers: { Authorization: basicAuth('ghost-user') } })
    assert.equal(r.status, 401, r.text)
    assert.equal(r.json?.code, 'unauthenticated')
    await assertServing()
  })

  test('a malformed Authorization header is refused', T, async () => {
    const r = await unary('filesystem.Filesystem/Stat', { path: '/tmp' }, { headers: { Authorization: 'Basic %%%not-base64' } })
    assert.ok(r.status >= 400 && r.status < 500, `${r.status} ${r.text}`)
    await assertServing()
  })

  test('GET /files: unknown user 401, directory 400, missing 404', T, async () => {
    const u = await fetch(`${ENVD_URL}/files?path=/etc/hostname&username=ghost-user`)
    assert.equal(u.status, 401)
    const uj = await u.json()
    assert.equal(uj.code, 401)
    const d = await fetch(`${ENVD_URL}/files?path=/tmp`)
    assert.equal(d.status, 400)
    assert.equal((await d.json()).code, 400)
    const missing = `/tmp/${uniq('missing')}`
    const m = await fetch(`${ENVD_URL}/files?path=${encodeURIComponent(missing)}`)
    assert.equal(m.status, 404)
    assert.deepEqual(await m.json(), { code: 404, message: `path '${missing}' does not exist` })
    await rejectsWith(sbx.files.read(missing), FileNotFoundError)
  })

  test('POST /files with an unsupported content type is 400', T, async () => {
    const r = await fetch(`${ENVD_URL}/files?path=/tmp/${uniq('ct')}`, {
      method: 'POST',
      headers: { 'Content-Type': 'text/plain' },
      body: 'x',
    })
    assert.equal(r.status, 400)
    assert.equal((await r.json()).code, 400)
  })

  test('POST /files with a broken multipart body is 400', T, async () => {
    const r = await fetch(`${ENVD_URL}/files?path=/tmp/${uniq('mp')}`, {
      method: 'POST',
      headers: { 'Content-Type': 'multipart/form-data; boundary=XYZ' },
      body: '--XYZ\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nno closing boundary',
    })
    assert.equal(r.status, 400)
    await r.body?.cancel()
    await assertServing()
  })

  test('paths with spaces, unicode and + in the query are handled', T, async () => {
    const path = `/tmp/${uniq('we ird')} ü+plus.txt`
    await sbx.files.write(path, 'odd name')
    assert.equal(await sbx.files.read(path), 'odd name')
    assert.equal((await sbx.files.getInfo(path)).path, path)
    assert.equal((await sbx.commands.run(`cat '${path}'`)).stdout, 'odd name')
  })
})

describe('raw HTTP garbage', () => {
  function rawExchange(bytes) {
    return new Promise((resolve) => {
      const url = new URL(ENVD_URL)
      const sock = net.connect(Number(url.port), url.hostname)
      let data = ''
      sock.setTimeout(5000, () => sock.destroy())
      sock.on('connect', () => sock.write(bytes))
      sock.on('data', (d) => (data += d.toString('latin1')))
      sock.on('close', () => resolve(data))
      sock.on('error', () => resolve(data))
    })
  }

  test('a garbage request line gets 400 or a closed connection', T, async () => {
    const resp = await rawExchange('THIS IS NOT HTTP\r\n\r\n')
    assert.ok(resp === '' || /^HTTP\/1\.[01] 4\d\d/.test(resp), resp.slice(0, 100))
    await assertServing()
  })

  test('a connection closed mid-request does not hurt', T, async () => {
    await rawExchange('POST /process.Process/List HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{')
    await assertServing()
  })

  test('a client that disconnects during a streaming command leaves the agent healthy', T, async () => {
    const ac = new AbortController()
    const p = fetch(`${ENVD_URL}/process.Process/Start`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/connect+json' },
      body: envelope(0, JSON.stringify({ process: { cmd: '/bin/sh', args: ['-c', 'sleep 2; echo x'] } })),
      signal: ac.signal,
    })
      .then((r) => r.arrayBuffer())
      .catch(() => null)
    setTimeout(() => ac.abort(), 200)
    await p
    await assertServing()
  })
})
