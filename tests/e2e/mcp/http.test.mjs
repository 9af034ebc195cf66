// `kiln mcp --http` (streamable HTTP transport) against a real kilnd, driven by the official
// MCP TypeScript SDK's StreamableHTTPClientTransport, plus raw requests for the transport's
// rules (session header, 405 for GET, DELETE, Origin, JSON-RPC errors).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { McpError } from '@modelcontextprotocol/sdk/types.js'
import { startKilnd, T, waitFor } from '../kilnd/harness.mjs'
import {
  TOOL_NAMES, PNG_MAGIC, startHttpServer, httpClient, call, text, ok, sandboxState, killSandbox,
} from './helpers.mjs'

const LONG = { timeout: 240_000 }
let kilnd, server

before(async () => {
  kilnd = await startKilnd(['--pool-size', '1', '--interp-pool-size', '1', '--no-build'])
  // kiln's own variable names this time (E2B_* work too: see stdio.test.mjs).
  server = await startHttpServer({ KILN_API_URL: kilnd.url, KILN_API_KEY: kilnd.apiKey })
})

after(async () => {
  if (server && server.proc.exitCode === null && server.proc.signalCode === null) {
    server.proc.kill('SIGTERM')
    await server.exited
  }
  await kilnd?.stop()
  kilnd?.cleanup()
})

async function post(body, headers = {}) {
  const res = await fetch(server.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
  const raw = await res.text()
  let json = null
  try { json = JSON.parse(raw) } catch {}
  return { status: res.status, headers: res.headers, raw, json }
}

const INIT = {
  jsonrpc: '2.0', id: 1, method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '0' } },
}

test('SDK client over streamable HTTP: tools, commands, files, run_code', LONG, async () => {
  const { client, transport } = await httpClient(server.url)
  try {
    assert.match(transport.sessionId, /^[0-9a-f]{32}$/)
    const { tools } = await client.listTools()
    assert.deepEqual(tools.map((t) => t.name).sort(), [...TOOL_NAMES].sort())
    for (const t of tools) assert.equal(t.inputSchema.type, 'object')

    const echo = ok(assert, await call(client, 'run_command', { cmd: 'echo over http; exit 0' }), 'echo')
    assert.equal(echo.structuredContent.stdout, 'over http\n')
    const failed = await call(client, 'run_command', { cmd: 'echo nope >&2; exit 7' })
    assert.equal(failed.isError, true)
    assert.equal(failed.structuredContent.exit_code, 7)
    assert.equal(failed.structuredContent.stderr, 'nope\n')

    ok(assert, await call(client, 'write_file', { path: '/tmp/h/a.txt', content: 'alpha' }), 'write')
    assert.equal(text(ok(assert, await call(client, 'read_file', { path: '/tmp/h/a.txt' }), 'read')), 'alpha')
    const listed = ok(assert, await call(client, 'list_dir', { path: '/tmp/h' }), 'list')
    assert.deepEqual(listed.structuredContent.entries.map((e) => e.name), ['a.txt'])

    await assert.rejects(call(client, 'no_such_tool'), (e) => e instanceof McpError && e.code === -32602)
    assert.deepEqual(await client.ping(), {})

    const made = ok(assert, await call(client, 'create_sandbox', { template: 'code-interpreter-v1', make_default: false }),
      'create a code-interpreter-v1 sandbox')
    const id = made.structuredContent.sandbox_id
    ok(assert, await call(client, 'run_code', { code: 'import math\nr = 3', sandbox_id: id }), 'cell 1')
    const area = ok(assert, await call(client, 'run_code', { code: 'round(math.pi * r * r, 2)', sandbox_id: id }), 'cell 2')
    assert.equal(area.structuredContent.text, '28.27')
    const chart = ok(assert, await call(client, 'run_code', {
      sandbox_id: id, code: 'import matplotlib.pyplot as plt\nplt.bar(["a", "b"], [3, 5])\nplt.show()',
    }), 'chart')
    const image = chart.content.find((c) => c.type === 'image')
    assert.equal(image.mimeType, 'image/png')
    assert.ok(Buffer.from(image.data, 'base64').subarray(0, 8).equals(PNG_MAGIC))
  } finally {
    await transport.terminateSession()
    await client.close()
  }
})

test('DELETE of the session kills the sandboxes it created (kept ones stay)', LONG, async () => {
  const { client, transport } = await httpClient(server.url)
  const byDefault = ok(assert, await call(client, 'run_command', { cmd: 'true' }), 'default').structuredContent.sandbox_id
  const kept = ok(assert, await call(client, 'create_sandbox', { template: 'base', keep: true }), 'kept').structuredContent.sandbox_id
  try {
    assert.equal(await sandboxState(kilnd, byDefault), 'running')
    const sessionId = transport.sessionId
    await transport.terminateSession()
    assert.equal(await sandboxState(kilnd, byDefault), 'gone')
    assert.equal(await sandboxState(kilnd, kept), 'running')
    // The session is gone for good.
    const after = await post({ jsonrpc: '2.0', id: 5, method: 'ping' }, { 'mcp-session-id': sessionId })
    assert.equal(after.status, 404)
    assert.equal(after.json.error.code, -32001)
  } finally {
    await client.close()
    await killSandbox(kilnd, kept)
  }
})

test('transport rules and JSON-RPC errors over HTTP; the server keeps serving', T, async () => {
  const init = await post(INIT)
  assert.equal(init.status, 200)
  assert.match(init.headers.get('content-type'), /application\/json/)
  const sid = init.headers.get('mcp-session-id')
  assert.match(sid, /^[0-9a-f]{32}$/)
  assert.equal(init.json.result.protocolVersion, '2025-06-18')
  const h = { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' }

  const note = await post({ jsonrpc: '2.0', method: 'notifications/initialized' }, h)
  assert.equal(note.status, 202)
  assert.equal(note.raw, '')

  const malformed = await post('{"jsonrpc": "2.0", "id": 2, "method": ', h)
  assert.equal(malformed.status, 400)
  assert.equal(malformed.json.error.code, -32700)
  const invalid = await post({ id: 3, method: 'ping' }, h)
  assert.equal(invalid.status, 400)
  assert.equal(invalid.json.error.code, -32600)
  assert.equal(invalid.json.id, 3)
  const batch = await post([{ jsonrpc: '2.0', id: 4, method: 'ping' }], h)
  assert.equal(batch.json.error.code, -32600)

  const unknownMethod = await post({ jsonrpc: '2.0', id: 5, method: 'resources/nope' }, h)
  assert.equal(unknownMethod.status, 200)
  assert.equal(unknownMethod.json.error.code, -32601)
  const unknownTool = await post({ jsonrpc: '2.0', id: 6, method: 'tools/call', params: { name: 'nope', arguments: {} } }, h)
  assert.equal(unknownTool.json.error.code, -32602)
  assert.match(unknownTool.json.error.message, /nope/)
  const badArgs = await post({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'run_command', arguments: { cmd: 5 } } }, h)
  assert.equal(badArgs.json.result.isError, true)
  assert.match(badArgs.json.result.content[0].text, /"cmd" must be a string/)

  const noSession = await post({ jsonrpc: '2.0', id: 8, method: 'ping' })
  assert.equal(noSession.status, 400)
  const wrongSession = await post({ jsonrpc: '2.0', id: 9, method: 'ping' }, { 'mcp-session-id': 'f'.repeat(32) })
  assert.equal(wrongSession.status, 404)
  const badVersion = await post({ jsonrpc: '2.0', id: 10, method: 'ping' }, { ...h, 'mcp-protocol-version': '1999-01-01' })
  assert.equal(badVersion.status, 400)
  const foreign = await post({ jsonrpc: '2.0', id: 11, method: 'ping' }, { ...h, origin: 'http://evil.example' })
  assert.equal(foreign.status, 403)
  const local = await post({ jsonrpc: '2.0', id: 12, method: 'ping' }, { ...h, origin: 'http://localhost:5173' })
  assert.equal(local.status, 200)

  const get = await fetch(server.url, { headers: { accept: 'text/event-stream', ...h } })
  assert.equal(get.status, 405)
  assert.match(get.headers.get('allow'), /POST/)
  await get.text()
  const other = await fetch(server.url.replace(/\/mcp$/, '/other'))
  assert.equal(other.status, 404)
  await other.text()

  // A client that accepts only an event stream gets the answer as one SSE event.
  const sse = await post({ jsonrpc: '2.0', id: 13, method: 'ping' }, { ...h, accept: 'text/event-stream' })
  assert.equal(sse.status, 200)
  assert.match(sse.headers.get('content-type'), /text\/event-stream/)
  const data = sse.raw.split('\n').find((l) => l.startsWith('data: '))
  assert.deepEqual(JSON.parse(data.slice(6)), { jsonrpc: '2.0', id: 13, result: {} })

  const alive = await post({ jsonrpc: '2.0', id: 14, method: 'ping' }, h)
  assert.deepEqual(alive.json, { jsonrpc: '2.0', id: 14, result: {} })
  const del = await fetch(server.url, { method: 'DELETE', headers: h })
  assert.equal(del.status, 200)
  await del.text()
  const delAgain = await fetch(server.url, { method: 'DELETE', headers: h })
  assert.equal(delAgain.status, 404)
  await delAgain.text()
})

test('SIGTERM ends every session and kills their sandboxes', LONG, async () => {
  const { client } = await httpClient(server.url)
  const id = ok(assert, await call(client, 'create_sandbox', { template: 'base' }), 'create').structuredContent.sandbox_id
  assert.equal(await sandboxState(kilnd, id), 'running')
  server.proc.kill('SIGTERM')
  const { code } = await server.exited
  assert.equal(code, 0)
  assert.equal(await sandboxState(kilnd, id), 'gone')
  await client.close().catch(() => {})
})

test('idle sessions expire and their sandboxes are killed', LONG, async () => {
  const idle = await startHttpServer({ E2B_API_URL: kilnd.url, E2B_API_KEY: kilnd.apiKey }, ['--session-idle', '1'])
  try {
    const { client } = await httpClient(idle.url)
    const id = ok(assert, await call(client, 'create_sandbox', { template: 'base' }), 'create').structuredContent.sandbox_id
    await waitFor(async () => (await sandboxState(kilnd, id)) === 'gone', { timeoutMs: 15_000, what: 'the idle session to end' })
    await assert.rejects(client.ping())
    await client.close().catch(() => {})
  } finally {
    idle.proc.kill('SIGTERM')
    await idle.exited
  }
})
