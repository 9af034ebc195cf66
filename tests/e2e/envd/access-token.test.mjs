// Access token and signed file URLs. Runs against the spare agent (KILN_E2E_SPARE_ENVD_URL) because
// setting a token changes global agent state; the token is cleared again at the end.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { AuthenticationError, Sandbox } from 'e2b'
import { HOME, rejectsWith, SPARE_ENVD_URL, T, uniq } from './helpers.mjs'

// The token of the upstream signature test vector, so the agent's signing is also checked
// against a fixed, known-good signature.
const TOKEN = '0tQG31xiMp0IOQfaz9dcwi72L1CPo8e0'
const UNAUTHORIZED =
  'unauthorized access, please provide a valid access token or method signing if supported'

const skip = SPARE_ENVD_URL ? false : 'needs KILN_E2E_SPARE_ENVD_URL (run via tests/e2e/run.sh)'

let sbx // with the token
let anon // without it
before(async () => {
  if (skip) return
  const res = await fetch(`${SPARE_ENVD_URL}/init`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ accessToken: TOKEN, defaultUser: 'user' }),
  })
  assert.equal(res.status, 204, `POST /init: ${res.status} ${await res.text()}`)
  sbx = new Sandbox({
    sandboxId: 'debug_sandbox_id',
    envdVersion: '0.6.13',
    envdAccessToken: TOKEN,
    debug: true,
    sandboxUrl: SPARE_ENVD_URL,
  })
  anon = new Sandbox({ sandboxId: 'debug_sandbox_id', envdVersion: '0.6.13', debug: true, sandboxUrl: SPARE_ENVD_URL })
})

after(async () => {
  if (skip) return
  // Clearing the token needs the token.
  const res = await fetch(`${SPARE_ENVD_URL}/init`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Access-Token': TOKEN },
    body: JSON.stringify({ accessToken: '' }),
  })
  assert.equal(res.status, 204)
})

describe('access token', { skip }, () => {
  test('SDK calls with the token work', T, async () => {
    assert.equal((await sbx.commands.run('whoami')).stdout, 'user\n')
    const f = `${HOME}/${uniq('tok')}.txt`
    await sbx.files.write(f, 'with token')
    assert.equal(await sbx.files.read(f), 'with token')
    assert.equal((await sbx.files.getInfo(f)).size, 10)
  })

  test('SDK calls without the token are AuthenticationError; health stays open', T, async () => {
    await rejectsWith(anon.commands.run('whoami'), AuthenticationError, 'commands.run')
    await rejectsWith(anon.commands.list(), AuthenticationError, 'commands.list')
    await rejectsWith(anon.files.read('/etc/hostname'), AuthenticationError, 'files.read')
    await rejectsWith(anon.files.write(`${HOME}/x`, 'x'), AuthenticationError, 'files.write')
    await rejectsWith(anon.files.exists('/tmp'), AuthenticationError, 'files.exists')
    assert.equal(await anon.isRunning(), true)
    assert.equal(await sbx.isRunning(), true)
  })

  test('raw requests without or with a wrong token get 401 JSON', T, async () => {
    for (const headers of [{}, { 'X-Access-Token': 'wrong' }]) {
      const r = await fetch(`${SPARE_ENVD_URL}/process.Process/List`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', ...headers },
        body: '{}',
      })
      assert.equal(r.status, 401)
      assert.deepEqual(await r.json(), { code: 401, message: UNAUTHORIZED })
      const e = await fetch(`${SPARE_ENVD_URL}/envs`, { headers })
      assert.equal(e.status, 401)
      await e.body?.cancel()
    }
    // /init cannot be used to take over the agent without the token.
    const i = await fetch(`${SPARE_ENVD_URL}/init`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ accessToken: 'attacker' }),
    })
    assert.equal(i.status, 401)
    await i.body?.cancel()
  })
})

describe('signed file URLs', { skip }, () => {
  test('uploadUrl + fetch POST multipart, downloadUrl + fetch GET', T, async () => {
    const path = `${HOME}/${uniq('signed')}.txt`
    const up = await sbx.uploadUrl(path)
    assert.match(up, /[?&]signature=v1_/)
    const form = new FormData()
    form.append('file', new Blob(['signed upload']), path)
    const r = await fetch(up, { method: 'POST', body: form })
    assert.equal(r.status, 200, await r.clone().text())
    const body = await r.json()
    assert.equal(body[0].path, path)

    const down = await sbx.downloadUrl(path)
    const g = await fetch(down)
    assert.equal(g.status, 200)
    assert.equal(await g.text(), 'signed upload')
    // Owned by the default user.
    assert.equal((await sbx.files.getInfo(path)).owner, 'user')
  })

  test('signed URLs for another user', T, async () => {
    const path = `/root/${uniq('signed-root')}.txt`
    const up = await sbx.uploadUrl(path, { user: 'root' })
    const form = new FormData()
    form.append('file', new Blob(['root upload']), path)
    const r = await fetch(up, { method: 'POST', body: form })
    assert.equal(r.status, 200, await r.clone().text())
    assert.equal((await sbx.files.getInfo(path, { user: 'root' })).owner, 'root')
    const g = await fetch(await sbx.downloadUrl(path, { user: 'root' }))
    assert.equal(await g.text(), 'root upload')
    // The signature binds the user: the same signature with another username is refused.
    const forged = new URL(await sbx.downloadUrl(path, { user: 'root' }))
    forged.searchParams.set('username', 'user')
    const f = await fetch(forged)
    assert.equal(f.status, 401)
    await f.body?.cancel()
  })

  test('a signature with a future expiration works', T, async () => {
    const path = `${HOME}/${uniq('exp-ok')}.txt`
    await sbx.files.write(path, 'not yet expired')
    const down = await sbx.downloadUrl(path, { useSignatureExpiration: 120 })
    assert.match(down, /signature_expiration=\d+/)
    const g = await fetch(down)
    assert.equal(g.status, 200)
    assert.equal(await g.text(), 'not yet expired')
  })

  test('an expired signature is refused with the upstream body', T, async () => {
    const path = `${HOME}/${uniq('exp')}.txt`
    await sbx.files.write(path, 'expired')
    const down = await sbx.downloadUrl(path, { useSignatureExpiration: -60 })
    const g = await fetch(down)
    assert.equal(g.status, 401)
    assert.deepEqual(await g.json(), { code: 401, message: 'signature is already expired' })
    const up = await sbx.uploadUrl(path, { useSignatureExpiration: -60 })
    const form = new FormData()
    form.append('file', new Blob(['nope']), path)
    const u = await fetch(up, { method: 'POST', body: form })
    assert.equal(u.status, 401)
    assert.deepEqual(await u.json(), { code: 401, message: 'signature is already expired' })
    assert.equal(await sbx.files.read(path), 'expired')
  })

  test('missing, tampered or wrong-operation signatures are refused', T, async () => {
    const path = `${HOME}/${uniq('tamper')}.txt`
    await sbx.files.write(path, 'secret')

    const plain = `${SPARE_ENVD_URL}/files?path=${encodeURIComponent(path)}`
    const m = await fetch(plain)
    assert.equal(m.status, 401)
    assert.deepEqual(await m.json(), { code: 401, message: 'missing signature query parameter' })

    const good = new URL(await sbx.downloadUrl(path))
    const bad = new URL(good)
    const sig = good.searchParams.get('signature')
    bad.searchParams.set('signature', sig.slice(0, -1) + (sig.endsWith('A') ? 'B' : 'A'))
    const b = await fetch(bad)
    assert.equal(b.status, 401)
    assert.deepEqual(await b.json(), { code: 401, message: 'invalid signature' })

    // A read signature does not allow writing.
    const form = new FormData()
    form.append('file', new Blob(['overwrite']), path)
    const w = await fetch(good, { method: 'POST', body: form })
    assert.equal(w.status, 401)
    await w.body?.cancel()
    assert.equal(await sbx.files.read(path), 'secret')
  })

  test('the upstream signature test vector is accepted', T, async () => {
    await sbx.files.write(`${HOME}/hello.txt`, 'vector')
    const sig = 'v1_gUtH/s9YCJWgCizjfUxuWfhFE4QSydOWEIIvfLwDr6E'
    const url = `${SPARE_ENVD_URL}/files?path=hello.txt&username=user&signature=${encodeURIComponent(sig)}`
    const g = await fetch(url)
    assert.equal(g.status, 200)
    assert.equal(await g.text(), 'vector')
  })

  test('the X-Access-Token header works on /files without a signature', T, async () => {
    const path = `${HOME}/${uniq('hdr')}.txt`
    await sbx.files.write(path, 'header auth')
    const g = await fetch(`${SPARE_ENVD_URL}/files?path=${encodeURIComponent(path)}`, {
      headers: { 'X-Access-Token': TOKEN },
    })
    assert.equal(g.status, 200)
    assert.equal(await g.text(), 'header auth')
    const w = await fetch(`${SPARE_ENVD_URL}/files?path=${encodeURIComponent(path)}`, {
      headers: { 'X-Access-Token': 'wrong' },
    })
    assert.equal(w.status, 401)
    await w.body?.cancel()
  })
})
