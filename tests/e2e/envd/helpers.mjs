// Shared helpers for the kiln-envd e2e tests. The tests themselves use the official SDK exactly as
// a user would (E2B_DEBUG=true, agent on localhost:49983); raw fetch is only used where a test
// needs to send what the SDK never sends.
import { randomBytes } from 'node:crypto'
import { Sandbox } from 'e2b'

if (process.env.E2B_DEBUG !== 'true') {
  throw new Error('run the e2e tests with E2B_DEBUG=true (tests/e2e/run.sh does)')
}

// The agent the SDK talks to in debug mode, and a spare one for tests that change global agent
// state (the access token). Both are set by run-envd-rootfs.sh.
export const ENVD_URL = process.env.KILN_E2E_ENVD_URL ?? 'http://localhost:49983'
export const SPARE_ENVD_URL = process.env.KILN_E2E_SPARE_ENVD_URL

// Values run-envd-rootfs.sh passes in POST /init.
export const INIT_ENVS = { KILN_E2E_GLOBAL: 'from-init', KILN_E2E_OVERRIDE: 'global' }
export const DEFAULT_USER = 'user'
export const HOME = '/home/user'

// Per-test timeout for node:test; a missing feature must fail, never hang the run.
export const T = { timeout: 30_000 }

export async function createSandbox() {
  return await Sandbox.create()
}

// A short unique token for file names and markers.
export function uniq(prefix = 'e2e') {
  return `${prefix}-${process.pid}-${randomBytes(4).toString('hex')}`
}

export { sleep, waitFor } from '../wait.mjs'

// Asserts that promise rejects with an instance of cls; returns the error for further checks.
export async function rejectsWith(promise, cls, what = '') {
  try {
    await promise
  } catch (err) {
    if (!(err instanceof cls)) {
      const e = new Error(
        `${what ? what + ': ' : ''}expected ${cls.name}, got ${err?.constructor?.name}: ${err?.message}`
      )
      e.cause = err
      throw e
    }
    return err
  }
  throw new Error(`${what ? what + ': ' : ''}expected ${cls.name}, but the call succeeded`)
}

// ---- raw Connect-RPC helpers (for bad-input tests) --------------------------------------------

export function envelope(flags, payload) {
  const body = typeof payload === 'string' ? Buffer.from(payload) : Buffer.from(payload ?? [])
  const head = Buffer.alloc(5)
  head.writeUInt8(flags, 0)
  head.writeUInt32BE(body.length, 1)
  return Buffer.concat([head, body])
}

// Splits a Connect streaming response body into {flags, json|raw} frames.
export function parseEnvelopes(buf) {
  const frames = []
  let off = 0
  while (off + 5 <= buf.length) {
    const flags = buf.readUInt8(off)
    const len = buf.readUInt32BE(off + 1)
    const payload = buf.subarray(off + 5, off + 5 + len)
    off += 5 + len
    let json
    try {
      json = JSON.parse(payload.toString('utf8'))
    } catch {
      json = undefined
    }
    frames.push({ flags, json, raw: payload })
  }
  return { frames, trailing: buf.length - off }
}

export function basicAuth(user) {
  return 'Basic ' + Buffer.from(`${user}:`).toString('base64')
}

export async function unary(method, body, { headers = {}, base = ENVD_URL } = {}) {
  const res = await fetch(`${base}/${method}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'Connect-Protocol-Version': '1', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
  const text = await res.text()
  let json
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { status: res.status, headers: res.headers, text, json }
}

export async function stream(method, rawBody, { headers = {}, base = ENVD_URL } = {}) {
  const res = await fetch(`${base}/${method}`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/connect+json',
      'Connect-Protocol-Version': '1',
      ...headers,
    },
    body: rawBody,
  })
  const buf = Buffer.from(await res.arrayBuffer())
  let json
  if (res.status !== 200) {
    try {
      json = JSON.parse(buf.toString('utf8'))
    } catch {
      json = undefined
    }
  }
  return { status: res.status, headers: res.headers, buf, json, ...parseEnvelopes(buf) }
}

// The Connect error a unary or streaming call ended with, or undefined on success.
export function connectError(r) {
  if (r.frames) {
    if (r.status !== 200) return r.json?.code ?? `http ${r.status}`
    const end = r.frames.find((f) => f.flags & 0x02)
    return end?.json?.error?.code
  }
  return r.status === 200 ? undefined : r.json?.code
}
