// `kiln mcp` on stdio, driven by the official MCP TypeScript SDK client against a real kilnd:
// tool schemas, commands, files, sandbox lifecycle, run_code (code-interpreter-v1), the
// session-end cleanup, and protocol errors on the raw stream.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { McpError } from '@modelcontextprotocol/sdk/types.js'
import { startKilnd, T, waitFor } from '../kilnd/harness.mjs'
import {
  KILN, TOOL_NAMES, PNG_MAGIC, stdioClient, call, text, ok, sandboxState, killSandbox, kilnEnv,
} from './helpers.mjs'

const LONG = { timeout: 240_000 }
let kilnd, vars, work, session

before(async () => {
  kilnd = await startKilnd(['--pool-size', '1', '--interp-pool-size', '1', '--no-build'])
  vars = { E2B_API_URL: kilnd.url, E2B_API_KEY: kilnd.apiKey }
  work = mkdtempSync(join(tmpdir(), 'kiln-mcp-'))
  session = await stdioClient(vars)
})

after(async () => {
  await session?.client.close()
  await kilnd?.stop()
  kilnd?.cleanup()
  rmSync(work, { recursive: true, force: true })
})

test('tools/list: every tool, with a schema an agent can act on', T, async () => {
  const { tools } = await session.client.listTools()
  assert.deepEqual(tools.map((t) => t.name).sort(), [...TOOL_NAMES].sort())
  const byName = Object.fromEntries(tools.map((t) => [t.name, t]))
  for (const t of tools) {
    assert.ok(t.description.length > 40, `${t.name} has a real description`)
    assert.equal(t.inputSchema.type, 'object')
    assert.equal(t.inputSchema.additionalProperties, false)
    for (const [name, prop] of Object.entries(t.inputSchema.properties)) {
      assert.ok(prop.type, `${t.name}.${name} has a type`)
      assert.ok(prop.description?.length > 5, `${t.name}.${name} is described`)
    }
  }
  const req = (name) => byName[name].inputSchema.required ?? []
  assert.deepEqual(req('run_code'), ['code'])
  assert.deepEqual(req('run_command'), ['cmd'])
  assert.deepEqual(req('kill_sandbox'), ['sandbox_id'])
  assert.deepEqual(req('write_file').sort(), ['content', 'path'])
  assert.deepEqual(req('read_file'), ['path'])
  assert.deepEqual(req('upload').sort(), ['host_path', 'sandbox_path'])
  assert.deepEqual(req('download').sort(), ['host_path', 'sandbox_path'])
  assert.deepEqual(req('create_sandbox'), [])
  const create = byName.create_sandbox.inputSchema.properties
  for (const p of ['template', 'timeout', 'env', 'metadata', 'internet', 'keep']) assert.ok(create[p], p)
  assert.equal(create.internet.type, 'boolean')
  assert.equal(create.env.additionalProperties.type, 'string')
  const code = byName.run_code.inputSchema.properties
  assert.deepEqual(code.language.enum, ['python', 'javascript', 'bash'])
  assert.ok(code.context_id && code.sandbox_id)
  const cmd = byName.run_command.inputSchema.properties
  for (const p of ['cwd', 'env', 'user', 'timeout', 'background', 'sandbox_id']) assert.ok(cmd[p], p)
  assert.equal(byName.list_sandboxes.annotations.readOnlyHint, true)
  assert.equal(byName.kill_sandbox.annotations.destructiveHint, true)
})

test('run_command in the default sandbox: output, exit codes, env/cwd/user, timeout, background', LONG, async () => {
  const { client } = session
  const hello = ok(assert, await call(client, 'run_command', { cmd: 'echo hello; echo oops >&2' }), 'echo')
  const id = hello.structuredContent.sandbox_id
  assert.match(id, /^[a-z0-9]+$/)
  assert.equal(hello.structuredContent.exit_code, 0)
  assert.equal(hello.structuredContent.stdout, 'hello\n')
  assert.equal(hello.structuredContent.stderr, 'oops\n')
  assert.match(text(hello), /default sandbox/)
  assert.equal(await sandboxState(kilnd, id), 'running')

  // The next call reuses the default sandbox.
  const again = ok(assert, await call(client, 'run_command', { cmd: 'echo $((6*7)) > /tmp/answer' }), 'write')
  assert.equal(again.structuredContent.sandbox_id, id)
  assert.doesNotMatch(text(again), /default sandbox/)

  const failed = await call(client, 'run_command', { cmd: 'cat /tmp/answer; echo bad >&2; exit 3' })
  assert.equal(failed.isError, true)
  assert.equal(failed.structuredContent.exit_code, 3)
  assert.equal(failed.structuredContent.stdout, '42\n')
  assert.match(text(failed), /exit code: 3/)
  assert.match(text(failed), /bad/)

  const env = ok(assert, await call(client, 'run_command', {
    cmd: 'echo "$GREETING"; pwd; whoami', env: { GREETING: 'hi there' }, cwd: '/tmp', user: 'root',
  }), 'env')
  assert.equal(env.structuredContent.stdout, 'hi there\n/tmp\nroot\n')
  const home = ok(assert, await call(client, 'run_command', { cmd: 'pwd; whoami' }), 'defaults')
  assert.equal(home.structuredContent.stdout, '/home/user\nuser\n')

  const started = Date.now()
  const slow = await call(client, 'run_command', { cmd: 'echo before; sleep 30', timeout: 1 })
  assert.equal(slow.isError, true)
  assert.equal(slow.structuredContent.timed_out, true)
  assert.match(text(slow), /timed out after 1 s/)
  assert.ok(Date.now() - started < 15_000, 'the timeout ended the call')

  const bg = ok(assert, await call(client, 'run_command', {
    cmd: 'sleep 0.2; echo done > /tmp/bg.txt; sleep 300', background: true,
  }), 'background')
  const pid = bg.structuredContent.pid
  assert.ok(pid > 0)
  assert.match(text(bg), /background/)
  await waitFor(async () => {
    const r = await call(client, 'run_command', { cmd: 'cat /tmp/bg.txt 2>/dev/null' })
    return r.structuredContent.stdout === 'done\n'
  }, { what: 'the background command to write its file' })
  ok(assert, await call(client, 'run_command', { cmd: `kill -0 ${pid} && kill ${pid}` }), 'it still runs')
})

test('files: write, read, list, upload, download; binary and image reads', LONG, async () => {
  const { client } = session
  const wrote = ok(assert, await call(client, 'write_file', {
    path: 'notes/plan.md', content: '# Plan\nstep 1 ✓\n',
  }), 'write_file')
  assert.equal(wrote.structuredContent.path, '/home/user/notes/plan.md')
  const read = ok(assert, await call(client, 'read_file', { path: '/home/user/notes/plan.md' }), 'read_file')
  assert.equal(text(read), '# Plan\nstep 1 ✓\n')

  ok(assert, await call(client, 'write_file', {
    path: '/home/user/notes/blob.bin', content: Buffer.from([0, 1, 2, 255, 254]).toString('base64'), encoding: 'base64',
  }), 'write base64')
  const binary = await call(client, 'read_file', { path: 'notes/blob.bin' })
  assert.equal(binary.isError, true)
  assert.match(text(binary), /binary file.*base64/)
  const b64 = ok(assert, await call(client, 'read_file', { path: 'notes/blob.bin', encoding: 'base64' }), 'base64')
  assert.deepEqual([...Buffer.from(text(b64), 'base64')], [0, 1, 2, 255, 254])

  const listed = ok(assert, await call(client, 'list_dir', { path: '/home/user/notes' }), 'list_dir')
  const names = listed.structuredContent.entries.map((e) => e.name).sort()
  assert.deepEqual(names, ['blob.bin', 'plan.md'])
  const plan = listed.structuredContent.entries.find((e) => e.name === 'plan.md')
  assert.equal(plan.type, 'file')
  assert.equal(plan.size, Buffer.byteLength('# Plan\nstep 1 ✓\n'))
  assert.match(text(listed), /plan\.md/)
  const home = ok(assert, await call(client, 'list_dir', {}), 'list home')
  assert.ok(home.structuredContent.entries.some((e) => e.name === 'notes' && e.type === 'dir'))

  const missing = await call(client, 'read_file', { path: '/nope/missing.txt' })
  assert.equal(missing.isError, true)
  assert.match(text(missing), /missing\.txt/)

  // Host <-> sandbox.
  const payload = Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 7) % 251))
  const local = join(work, 'data.bin')
  writeFileSync(local, payload)
  const up = ok(assert, await call(client, 'upload', { host_path: local, sandbox_path: '/home/user/notes/' }), 'upload')
  assert.equal(up.structuredContent.sandbox_path, '/home/user/notes/data.bin')
  const size = ok(assert, await call(client, 'run_command', { cmd: 'stat -c %s notes/data.bin' }), 'stat')
  assert.equal(size.structuredContent.stdout, '200000\n')
  const back = join(work, 'back.bin')
  ok(assert, await call(client, 'download', { sandbox_path: 'notes/data.bin', host_path: back }), 'download')
  assert.ok(readFileSync(back).equals(payload))
  const noFile = await call(client, 'upload', { host_path: join(work, 'absent'), sandbox_path: '/tmp/x' })
  assert.equal(noFile.isError, true)
  assert.match(text(noFile), /absent/)

  // An image file comes back as image content.
  ok(assert, await call(client, 'write_file', {
    path: '/tmp/dot.png', encoding: 'base64',
    content: 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  }), 'write png')
  const img = ok(assert, await call(client, 'read_file', { path: '/tmp/dot.png' }), 'read png')
  const block = img.content.find((c) => c.type === 'image')
  assert.equal(block.mimeType, 'image/png')
  assert.ok(Buffer.from(block.data, 'base64').subarray(0, 8).equals(PNG_MAGIC))

  const bad = await call(client, 'write_file', { path: '/tmp/x', content: 'x', bogus: true })
  assert.equal(bad.isError, true)
  assert.match(text(bad), /unknown argument "bogus"/)
})

test('create_sandbox, list_sandboxes, kill_sandbox; unknown sandboxes are tool errors', LONG, async () => {
  const { client } = session
  const byDefault = ok(assert, await call(client, 'run_command', { cmd: 'true' }), 'default sandbox').structuredContent.sandbox_id
  const made = ok(assert, await call(client, 'create_sandbox', {
    template: 'base', timeout: 600, env: { MODE: 'test' }, metadata: { job: 'mcp-e2e' },
    internet: false, make_default: false,
  }), 'create_sandbox')
  const id = made.structuredContent.sandbox_id
  assert.equal(made.structuredContent.template, 'base')
  assert.equal(made.structuredContent.default, false)
  assert.equal(made.structuredContent.keep, false)
  try {
    const env = ok(assert, await call(client, 'run_command', { cmd: 'echo $MODE', sandbox_id: id }), 'env')
    assert.equal(env.structuredContent.stdout, 'test\n')
    assert.equal(env.structuredContent.sandbox_id, id)

    const listed = ok(assert, await call(client, 'list_sandboxes', { metadata: { job: 'mcp-e2e' } }), 'list')
    assert.deepEqual(listed.structuredContent.sandboxes.map((s) => s.sandbox_id), [id])
    const entry = listed.structuredContent.sandboxes[0]
    assert.equal(entry.created_by_this_session, true)
    assert.equal(entry.default, false)
    assert.equal(entry.state, 'running')
    assert.deepEqual(entry.metadata, { job: 'mcp-e2e' })
    assert.match(text(listed), new RegExp(id))
    const all = ok(assert, await call(client, 'list_sandboxes'), 'list all')
    const marked = all.structuredContent.sandboxes.filter((s) => s.default).map((s) => s.sandbox_id)
    assert.deepEqual(marked, [byDefault], 'the default sandbox is marked')
  } finally {
    const killed = ok(assert, await call(client, 'kill_sandbox', { sandbox_id: id }), 'kill')
    assert.match(text(killed), /Killed sandbox/)
  }
  assert.equal(await sandboxState(kilnd, id), 'gone')

  const again = await call(client, 'kill_sandbox', { sandbox_id: id })
  assert.equal(again.isError, true)
  assert.match(text(again), /not found/)
  const gone = await call(client, 'run_command', { cmd: 'true', sandbox_id: id })
  assert.equal(gone.isError, true)
  assert.match(text(gone), /404|not found/)
  const badId = await call(client, 'read_file', { path: '/etc/hostname', sandbox_id: 'Not An Id' })
  assert.equal(badId.isError, true)
  assert.match(text(badId), /not a sandbox ID/)
  const noTemplate = await call(client, 'create_sandbox', { template: 'no-such-template' })
  assert.equal(noTemplate.isError, true)
  assert.match(text(noTemplate), /no-such-template/)
})

// The transport of run_code (kilnd's proxy to port 49999, token, NDJSON) with a stand-in for
// kiln-interp in a base sandbox: independent of the code-interpreter-v1 template.
const FAKE_INTERP = `
import http.server, json
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["content-length"])))
        lines = [{"type": "number_of_executions", "execution_count": 1},
                 {"type": "stdout", "text": "ran " + req["code"] + " token=" + self.headers.get("x-access-token", "") + "\\n", "timestamp": "t"},
                 {"type": "result", "is_main_result": False, "png": PNG, "text": "<Figure>", "extra": {}},
                 {"type": "result", "is_main_result": True, "text": req.get("language", "none")},
                 {"type": "end_of_execution"}]
        if req["code"] == "boom":
            lines.insert(1, {"type": "error", "name": "ValueError", "value": "boom", "traceback": "\\u001b[31mValueError\\u001b[0m: boom"})
        body = "\\n".join(json.dumps(l) for l in lines).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("0.0.0.0", 49999), H).serve_forever()
`

test('run_code through kilnd\'s proxy to port 49999 (a stand-in interpreter in a base sandbox)', LONG, async () => {
  const { client } = session
  const id = ok(assert, await call(client, 'create_sandbox', { template: 'base', make_default: false }), 'create').structuredContent.sandbox_id
  try {
    const none = await call(client, 'run_code', { code: '1', sandbox_id: id })
    assert.equal(none.isError, true)
    assert.match(text(none), /no code interpreter.*code-interpreter-v1/s)

    ok(assert, await call(client, 'write_file', { path: '/tmp/fake_interp.py', content: FAKE_INTERP, sandbox_id: id }), 'write')
    ok(assert, await call(client, 'run_command', {
      cmd: 'python3 /tmp/fake_interp.py > /tmp/fake.log 2>&1', background: true, sandbox_id: id,
    }), 'start')
    const r = await waitFor(async () => {
      const res = await call(client, 'run_code', { code: 'x = 1', language: 'python', sandbox_id: id })
      return res.isError ? null : res
    }, { what: 'the stand-in interpreter to answer' })
    assert.match(r.structuredContent.stdout, /^ran x = 1 token=\S+\n$/)
    assert.equal(r.structuredContent.text, 'python')
    assert.equal(r.structuredContent.execution_count, 1)
    const image = r.content.find((c) => c.type === 'image')
    assert.equal(image.mimeType, 'image/png')
    assert.ok(Buffer.from(image.data, 'base64').subarray(0, 8).equals(PNG_MAGIC))
    const boom = await call(client, 'run_code', { code: 'boom', sandbox_id: id })
    assert.equal(boom.isError, true)
    assert.equal(boom.structuredContent.error.name, 'ValueError')
    assert.equal(boom.structuredContent.error.traceback, 'ValueError: boom')
  } finally {
    await call(client, 'kill_sandbox', { sandbox_id: id })
  }
})

test('run_code (code-interpreter-v1): state across calls, PNG charts, errors with traceback', LONG, async () => {
  const { client } = session
  const made = ok(assert, await call(client, 'create_sandbox', { template: 'code-interpreter-v1', make_default: false }),
    'create a code-interpreter-v1 sandbox')
  const id = made.structuredContent.sandbox_id
  try {
    const first = ok(assert, await call(client, 'run_code', { code: 'x = 21\nprint("x is set")', sandbox_id: id }), 'cell 1')
    assert.match(first.structuredContent.stdout, /x is set/)
    const second = ok(assert, await call(client, 'run_code', { code: 'x * 2', sandbox_id: id }), 'cell 2')
    assert.equal(second.structuredContent.text, '42')
    assert.match(text(second), /\[result\]\n42/)

    const chart = ok(assert, await call(client, 'run_code', {
      sandbox_id: id,
      code: 'import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title("squares")\nplt.show()',
    }), 'chart')
    const images = chart.content.filter((c) => c.type === 'image')
    assert.equal(images.length, 1)
    assert.equal(images[0].mimeType, 'image/png')
    assert.ok(Buffer.from(images[0].data, 'base64').subarray(0, 8).equals(PNG_MAGIC))

    const error = await call(client, 'run_code', { code: 'def f():\n    return 1 / 0\nf()', sandbox_id: id })
    assert.equal(error.isError, true)
    assert.equal(error.structuredContent.error.name, 'ZeroDivisionError')
    assert.match(error.structuredContent.error.traceback, /ZeroDivisionError/)
    assert.doesNotMatch(error.structuredContent.error.traceback, /\x1b\[/, 'no ANSI colors')
    assert.match(text(error), /\[error\] ZeroDivisionError/)
    // The kernel keeps serving after an error.
    const after = ok(assert, await call(client, 'run_code', { code: 'x + 1', sandbox_id: id }), 'after error')
    assert.equal(after.structuredContent.text, '22')
  } finally {
    await call(client, 'kill_sandbox', { sandbox_id: id })
  }
})

test('session end: closing stdin kills the sandboxes the session created, except kept ones', LONG, async () => {
  const s = await stdioClient(vars)
  const first = ok(assert, await call(s.client, 'run_command', { cmd: 'true' }), 'default sandbox')
  const byDefault = first.structuredContent.sandbox_id
  const kept = ok(assert, await call(s.client, 'create_sandbox', { template: 'base', keep: true }), 'kept').structuredContent.sandbox_id
  const other = ok(assert, await call(s.client, 'create_sandbox', { template: 'base' }), 'other').structuredContent.sandbox_id
  try {
    for (const id of [byDefault, kept, other]) assert.equal(await sandboxState(kilnd, id), 'running')
    const started = Date.now()
    await s.client.close()
    // The SDK sends SIGTERM after 2 s; the server ended on its own, after its cleanup.
    assert.ok(Date.now() - started < 2000, `kiln mcp exited on end of input (${Date.now() - started} ms)`)
    assert.equal(await sandboxState(kilnd, byDefault), 'gone')
    assert.equal(await sandboxState(kilnd, other), 'gone')
    assert.equal(await sandboxState(kilnd, kept), 'running')
  } finally {
    await killSandbox(kilnd, kept)
  }
})

test('SIGTERM ends the session like end of input', LONG, async () => {
  const s = await stdioClient(vars)
  const id = ok(assert, await call(s.client, 'create_sandbox', { template: 'base' }), 'create').structuredContent.sandbox_id
  process.kill(s.transport.pid, 'SIGTERM')
  await waitFor(async () => (await sandboxState(kilnd, id)) === 'gone', { what: 'the sandbox to be killed' })
  await s.client.close()
})

test('kilnd unreachable: tool errors with a hint, and the server keeps serving', T, async () => {
  const s = await stdioClient({ KILN_API_URL: 'http://127.0.0.1:1', KILN_API_KEY: 'e2b_x' })
  try {
    const r = await call(s.client, 'run_command', { cmd: 'true' })
    assert.equal(r.isError, true)
    assert.match(text(r), /cannot reach kilnd at http:\/\/127\.0\.0\.1:1/)
    const l = await call(s.client, 'list_sandboxes')
    assert.equal(l.isError, true)
    assert.deepEqual(await s.client.ping(), {})
  } finally {
    await s.client.close()
  }
})

test('protocol errors: unknown tools through the SDK, then raw malformed JSON-RPC; the server keeps serving', T, async () => {
  await assert.rejects(call(session.client, 'no_such_tool'), (e) => {
    assert.ok(e instanceof McpError)
    assert.equal(e.code, -32602)
    assert.match(e.message, /no_such_tool/)
    return true
  })
  assert.deepEqual(await session.client.ping(), {})

  const proc = spawn(KILN, ['mcp'], { env: kilnEnv(vars), stdio: ['pipe', 'pipe', 'pipe'] })
  const exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)))
  const lines = []
  let wake = () => {}
  createInterface({ input: proc.stdout }).on('line', (l) => { lines.push(JSON.parse(l)); wake() })
  const next = async () => {
    while (lines.length === 0) await new Promise((resolve) => { wake = resolve })
    return lines.shift()
  }
  const send = (s) => proc.stdin.write(s + '\n')
  try {
    send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '0' } } }))
    const init = await next()
    assert.equal(init.id, 1)
    assert.equal(init.result.protocolVersion, '2025-06-18')
    assert.ok(init.result.capabilities.tools)
    assert.equal(init.result.serverInfo.name, 'kiln')
    send(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }))

    const cases = [
      ['{"jsonrpc": "2.0", "id": 2, "method": "tools/list"', null, -32700],
      ['not json at all', null, -32700],
      ['[]', null, -32600],
      ['[{"jsonrpc":"2.0","id":3,"method":"ping"}]', null, -32600],
      ['"just a string"', null, -32600],
      ['{"id": 4, "method": "ping"}', 4, -32600],
      ['{"jsonrpc": "1.0", "id": 5, "method": "ping"}', 5, -32600],
      ['{"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"}', null, -32600],
      ['{"jsonrpc": "2.0", "id": 6, "method": 7}', 6, -32600],
      ['{"jsonrpc": "2.0", "id": 7, "method": "no/such/method"}', 7, -32601],
      ['{"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "nope"}}', 8, -32602],
      ['{"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {}}', 9, -32602],
      ['{"jsonrpc": "2.0", "id": 10, "method": "tools/call", "params": {"name": "run_command", "arguments": [1]}}', 10, -32602],
      ['{"jsonrpc": "2.0", "id": 11, "method": "tools/list", "params": [1, 2]}', 11, -32602],
      ['{"jsonrpc": "2.0", "id": "s-12", "method": "initialize", "params": {}}', 's-12', -32602],
    ]
    for (const [line, id, code] of cases) {
      send(line)
      const r = await next()
      assert.equal(r.jsonrpc, '2.0', line)
      assert.equal(r.id, id, line)
      assert.equal(r.error?.code, code, `${line} -> ${JSON.stringify(r)}`)
      assert.equal(typeof r.error.message, 'string')
    }
    // An unsupported protocol version is answered with ours.
    send(JSON.stringify({ jsonrpc: '2.0', id: 13, method: 'initialize', params: { protocolVersion: '1999-01-01', capabilities: {}, clientInfo: { name: 'raw', version: '0' } } }))
    assert.equal((await next()).result.protocolVersion, '2025-06-18')
    // Blank lines, notifications and responses get no answer; the server is still there.
    send('')
    send('{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}}')
    send('{"jsonrpc": "2.0", "id": 42, "result": {}}')
    send('{"jsonrpc": "2.0", "id": "last", "method": "ping"}')
    assert.deepEqual(await next(), { jsonrpc: '2.0', id: 'last', result: {} })
    const tools = (send('{"jsonrpc":"2.0","id":14,"method":"tools/list"}'), await next())
    assert.equal(tools.result.tools.length, 10)
  } finally {
    proc.stdin.end()
  }
  assert.equal(await exited, 0)
})
