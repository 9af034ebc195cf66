// The kiln CLI against a real kilnd: keys, sandbox create/list/info/exec/cp/pause/resume/kill.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { startKilnd, KILND, T } from './harness.mjs'

const KILN = process.env.KILN_CLI ?? join(dirname(KILND), 'kiln')
let kilnd, env, work

function kiln(args, { input, key } = {}) {
  const r = spawnSync(KILN, args, {
    input, encoding: 'utf8', env: { ...process.env, ...env, ...(key ? { E2B_API_KEY: key } : {}) },
  })
  return { code: r.status, out: r.stdout, err: r.stderr }
}

before(async () => {
  kilnd = await startKilnd(['--pool-size', '1'])
  env = { E2B_API_URL: kilnd.url, E2B_API_KEY: kilnd.apiKey }
  work = mkdtempSync(join(tmpdir(), 'kiln-cli-'))
})

after(async () => {
  await kilnd?.stop()
  kilnd?.cleanup()
  rmSync(work, { recursive: true, force: true })
})

test('keys create works while kilnd runs; a wrong key is refused', T, async () => {
  const made = kiln(['keys', 'create', '--data-dir', kilnd.dataDir])
  assert.equal(made.code, 0, made.err)
  const key = made.out.trim()
  assert.match(key, /^e2b_[0-9a-f]{40}$/)
  assert.equal(kiln(['sandbox', 'list'], { key }).code, 0)
  const bad = kiln(['sandbox', 'list'], { key: 'e2b_' + '0'.repeat(40) })
  assert.equal(bad.code, 1)
  assert.match(bad.err, /401/)
})

test('create, list, info, exec, cp, pause, resume, kill', T, async () => {
  const created = kiln(['sandbox', 'create', '--metadata', 'job=cli', '--env', 'GREETING=hello cli'])
  assert.equal(created.code, 0, created.err)
  const id = created.out.trim()
  assert.match(id, /^[a-z0-9]+$/)
  try {
    const list = kiln(['sandbox', 'list', '--metadata', 'job=cli'])
    assert.equal(list.code, 0, list.err)
    assert.ok(list.out.includes(id))
    const info = kiln(['sandbox', 'info', id, '--json'])
    assert.equal(JSON.parse(info.out).state, 'running')

    const exec = kiln(['sandbox', 'exec', id, '--', 'sh', '-c', 'echo "$GREETING"; echo oops >&2; exit 4'])
    assert.equal(exec.code, 4)
    assert.equal(exec.out, 'hello cli\n')
    assert.equal(exec.err, 'oops\n')
    const stdin = kiln(['sandbox', 'exec', id, '--', 'wc', '-c'], { input: 'x'.repeat(100000) })
    assert.equal(stdin.out.trim(), '100000')

    const local = join(work, 'up.bin')
    const payload = Buffer.from(Array.from({ length: 300000 }, (_, i) => i % 251))
    writeFileSync(local, payload)
    assert.equal(kiln(['sandbox', 'cp', local, `${id}:/home/user/up.bin`]).code, 0)
    const sum = kiln(['sandbox', 'exec', id, '--', 'sh', '-c', 'stat -c %s /home/user/up.bin'])
    assert.equal(sum.out.trim(), '300000')
    const back = join(work, 'down.bin')
    assert.equal(kiln(['sandbox', 'cp', `${id}:/home/user/up.bin`, back]).code, 0)
    assert.ok(readFileSync(back).equals(payload))

    assert.equal(kiln(['sandbox', 'pause', id]).code, 0)
    assert.match(kiln(['sandbox', 'list', '--state', 'paused']).out, new RegExp(id))
    assert.equal(kiln(['sandbox', 'resume', id]).code, 0)
    assert.equal(kiln(['sandbox', 'exec', id, '--', 'cat', '/home/user/up.bin']).out.length > 0, true)
  } finally {
    assert.equal(kiln(['sandbox', 'kill', id]).code, 0)
  }
  const again = kiln(['sandbox', 'kill', id])
  assert.equal(again.code, 1)
  assert.match(again.err, /not found/)
})

test('usage errors exit 2; an unreachable kilnd is named', T, async () => {
  assert.equal(kiln(['sandbox', 'frobnicate']).code, 2)
  assert.equal(kiln(['--no-such-flag']).code, 2)
  const down = spawnSync(KILN, ['sandbox', 'list'], {
    encoding: 'utf8', env: { ...process.env, E2B_API_URL: 'http://127.0.0.1:1', E2B_API_KEY: kilnd.apiKey },
  })
  assert.equal(down.status, 1)
  assert.match(down.stderr, /cannot reach kilnd/)
})
