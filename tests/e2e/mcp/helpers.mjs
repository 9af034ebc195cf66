// Shared pieces of the `kiln mcp` e2e tests: MCP clients from the official TypeScript SDK
// (@modelcontextprotocol/sdk, pinned in tests/e2e/package.json) over stdio and streamable HTTP,
// and a look at kilnd's REST API to see which sandboxes exist.
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { dirname, join } from 'node:path'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { KILND } from '../kilnd/harness.mjs'

// The kiln binary sits beside kilnd in the build tree.
export const KILN = process.env.KILN_CLI ?? join(dirname(KILND), 'kiln')

// Options for tool calls that may create a sandbox (the default one is made on first use).
export const CALL = { timeout: 180_000 }

export const TOOL_NAMES = [
  'create_sandbox', 'list_sandboxes', 'kill_sandbox', 'run_code', 'run_command',
  'read_file', 'write_file', 'list_dir', 'upload', 'download',
]

// The environment of a kiln process: only what it needs, plus the connection variables.
export function kilnEnv(vars) {
  return { PATH: process.env.PATH, HOME: process.env.HOME ?? '/root', ...vars }
}

// An SDK client talking to `kiln mcp` on stdio (the way agents launch it).
export async function stdioClient(vars, args = []) {
  const transport = new StdioClientTransport({
    command: KILN, args: ['mcp', ...args], env: kilnEnv(vars), stderr: 'pipe',
  })
  const stderr = []
  transport.stderr?.on('data', (d) => {
    stderr.push(d.toString())
    if (process.env.KILN_E2E_VERBOSE) process.stderr.write(d)
  })
  const client = new Client({ name: 'kiln-e2e', version: '1.0.0' })
  await client.connect(transport)
  return { client, transport, stderr }
}

// `kiln mcp --http 127.0.0.1:0`; resolves with the process and the URL it prints.
export async function startHttpServer(vars, args = []) {
  const proc = spawn(KILN, ['mcp', '--http', '127.0.0.1:0', ...args], {
    env: kilnEnv(vars), stdio: ['ignore', 'pipe', 'pipe'],
  })
  const output = []
  proc.stderr.setEncoding('utf8')
  proc.stderr.on('data', (d) => {
    output.push(d)
    if (process.env.KILN_E2E_VERBOSE) process.stderr.write(d)
  })
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })))
  const url = await new Promise((resolve, reject) => {
    createInterface({ input: proc.stdout }).on('line', (line) => {
      const m = line.match(/^kiln mcp: listening on (http:\/\/127\.0\.0\.1:\d+\/mcp)$/)
      if (m) resolve(m[1])
    })
    exited.then(({ code, signal }) =>
      reject(new Error(`kiln mcp --http exited (${code ?? signal}) before it listened:\n${output.join('')}`)))
  })
  return { proc, url, exited, output }
}

export async function httpClient(url) {
  const transport = new StreamableHTTPClientTransport(new URL(url))
  const client = new Client({ name: 'kiln-e2e-http', version: '1.0.0' })
  await client.connect(transport)
  return { client, transport }
}

export function call(client, name, args = {}) {
  return client.callTool({ name, arguments: args }, undefined, CALL)
}

// The text blocks of a tool result, joined.
export function text(result) {
  return result.content.filter((c) => c.type === 'text').map((c) => c.text).join('')
}

// Asserting helpers return the result so tests can look further.
export function ok(assert, result, what) {
  assert.equal(result.isError, false, `${what} failed: ${text(result)}`)
  return result
}

// The sandbox's state per kilnd ('running', 'paused'), or 'gone' when kilnd does not know it.
export async function sandboxState(kilnd, id) {
  const res = await fetch(`${kilnd.url}/sandboxes/${id}`, { headers: { 'X-API-Key': kilnd.apiKey } })
  if (res.status === 404) return 'gone'
  if (!res.ok) throw new Error(`GET /sandboxes/${id}: ${res.status} ${await res.text()}`)
  return (await res.json()).state
}

export async function killSandbox(kilnd, id) {
  await fetch(`${kilnd.url}/sandboxes/${id}`, { method: 'DELETE', headers: { 'X-API-Key': kilnd.apiKey } })
}

export const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
