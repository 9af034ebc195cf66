// Starts and stops kilnd for the e2e tests. Each test file gets its own kilnd (own data dir,
// instance name, sandbox subnet and a free port), so files run in parallel without sharing
// state. The SDK is pointed at it exactly as a user would: E2B_API_URL and E2B_SANDBOX_URL.
import { spawn, execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, readFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { waitFor } from '../wait.mjs'

export const KILND = process.env.KILN_KILND
// The runtime every sandbox of these tests uses: ns (default) or vm (KILN_E2E_RUNTIME=vm runs
// the same files with a QEMU microVM per sandbox).
export const RUNTIME = process.env.KILN_E2E_RUNTIME ?? 'ns'
export const TEMPLATE_DIR = process.env.KILN_TEMPLATE_DIR ?? '/var/cache/kiln/templates'
if (!KILND) throw new Error('KILN_KILND (path of the kilnd binary) is not set; use tests/e2e/run-kilnd.sh')

// Per-test timeout for node:test; a missing feature must fail, never hang the run. Under the
// vm runtime on TCG (software emulation, ~10x slower code in the guest) a new Jupyter kernel
// alone takes ~40 s, so tests get more time there.
export const T = { timeout: process.env.KILN_E2E_RUNTIME === 'vm' ? 300_000 : 60_000 }

let counter = 0

// Distinct /16 per kilnd of this process: 10.(100 + n).0.0/16 with n from the pid and a counter.
function subnetFor(slot) {
  return `10.${100 + (slot % 120)}.0.0/16`
}

export class Kilnd {
  constructor({ dataDir, name, subnet, args = [] }) {
    this.dataDir = dataDir
    this.name = name
    this.subnet = subnet
    this.args = args
    this.proc = null
    this.url = null
    this.apiKey = null
    this.output = []
  }

  // Starts kilnd and resolves once it prints its ready line. The first start in a data dir prints
  // the initial API key; later starts reuse it.
  async start() {
    // Code-interpreter sandboxes (kernels started ahead) only for the files that use them.
    const pool = this.args.includes('--interp-pool-size') ? [] : ['--interp-pool-size', '0']
    const runtime = RUNTIME === 'ns' ? [] : ['--runtime', RUNTIME]
    const args = [
      '--listen', '127.0.0.1:0', '--data-dir', this.dataDir, '--template-dir', TEMPLATE_DIR,
      '--name', this.name, '--subnet', this.subnet, ...pool, ...runtime, ...this.args,
    ]
    const proc = spawn(KILND, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    this.proc = proc
    const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })))
    this.exited = exited
    proc.stderr.setEncoding('utf8')
    proc.stderr.on('data', (d) => {
      this.output.push(d)
      if (process.env.KILN_E2E_VERBOSE) process.stderr.write(d)
    })
    const lines = createInterface({ input: proc.stdout })
    const ready = new Promise((resolve, reject) => {
      lines.on('line', (line) => {
        this.output.push(line + '\n')
        const key = line.match(/E2B_API_KEY=(e2b_[0-9a-f]+)/)
        if (key) this.apiKey = key[1]
        const m = line.match(/^kilnd: ready on (http:\/\/[0-9.]+:\d+)/)
        if (m) resolve(m[1])
      })
      exited.then(({ code, signal }) =>
        reject(new Error(`kilnd exited (${code ?? signal}) before it was ready:\n${this.output.join('')}`)))
    })
    this.url = await ready
    return this
  }

  // The SDK's connection options (after a restart the port changes: call it again).
  env() {
    return { apiKey: this.apiKey, apiUrl: this.url, sandboxUrl: this.url }
  }

  async stop(signal = 'SIGTERM') {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return
    this.proc.kill(signal)
    await this.exited
  }

  cleanup() {
    rmSync(this.dataDir, { recursive: true, force: true })
  }
}

// A fresh kilnd in a fresh data dir; `args` are extra flags.
export async function startKilnd(args = []) {
  const n = (process.pid * 7 + counter++) % 1000
  const dataDir = mkdtempSync(join(tmpdir(), 'kilnd-e2e-'))
  const k = new Kilnd({ dataDir, name: `ke${n}`, subnet: subnetFor(n), args })
  await k.start()
  if (!k.apiKey) throw new Error('kilnd did not print an API key on its first start')
  return k
}

export { sleep, waitFor } from '../wait.mjs'

// Host-side leftovers of a kilnd instance: processes in its cgroups, veths, nft table, mounts.
export function hostLeftovers(name) {
  const out = {}
  const ifaces = readFileSync('/proc/net/dev', 'utf8').split('\n').map((l) => l.split(':')[0].trim())
  out.veths = ifaces.filter((i) => i.startsWith(`${name}-`))
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
  out.mounts = mounts.filter((m) => m.includes(`kiln-${name}`) || m.includes(`/${name}/`))
  out.cgroups = []
  for (const dir of ['unified/', 'memory/', 'pids/', ''].flatMap((h) =>
    [`/sys/fs/cgroup/${h}kiln-${name}`, `/sys/fs/cgroup/${h}kiln-${name}-vm`])) {
    if (existsSync(dir)) {
      const procs = existsSync(join(dir, 'cgroup.procs')) ? readFileSync(join(dir, 'cgroup.procs'), 'utf8').trim() : ''
      out.cgroups.push({ dir, procs })
    }
  }
  return out
}

function ip(...args) {
  return execFileSync('ip', args, { encoding: 'utf8' })
}

// A network namespace `name` joined to the host by a veth (host side `hostAddr`, namespace side
// `nsAddr`, CIDR notation) with a web server on nsAddr:port inside: a stand-in for the
// internet, a LAN or a metadata service that tests build themselves. Resolves once the host
// reaches the server; returns the server process (kill it, then removePeer(name)).
export async function startPeer(name, hostAddr, nsAddr, port = 8080) {
  ip('netns', 'add', name)
  ip('link', 'add', `${name}h`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name)
  ip('addr', 'add', hostAddr, 'dev', `${name}h`)
  ip('link', 'set', `${name}h`, 'up')
  ip('-n', name, 'addr', 'add', nsAddr, 'dev', 'eth0')
  ip('-n', name, 'link', 'set', 'eth0', 'up')
  ip('-n', name, 'link', 'set', 'lo', 'up')
  const addr = nsAddr.split('/')[0]
  const web = spawn('ip', ['netns', 'exec', name, 'python3', '-m', 'http.server', String(port), '--bind', addr],
    { stdio: 'ignore', cwd: '/usr/share/doc' })
  // Positive control: the host reaches it.
  await waitFor(async () => {
    try {
      return (await fetch(`http://${addr}:${port}/`, { signal: AbortSignal.timeout(1000) })).status === 200
    } catch { return false }
  }, { what: `the web server in ${name}` })
  return web
}

// Deletes a namespace made by startPeer (its veth goes with it).
export function removePeer(name) {
  try { ip('netns', 'del', name) } catch {}
}

// The cgroup.procs file of a sandbox's group (either cgroup layout), or undefined.
export function sandboxProcsFile(name, id) {
  const parent = RUNTIME === 'vm' ? `kiln-${name}-vm` : `kiln-${name}`
  return [`/sys/fs/cgroup/unified/${parent}/${id}/cgroup.procs`, `/sys/fs/cgroup/${parent}/${id}/cgroup.procs`]
    .find((f) => existsSync(f))
}

// Host pids of a sandbox's processes (ns: everything in it; vm: its QEMU).
export function sandboxPids(name, id) {
  const file = sandboxProcsFile(name, id)
  if (!file) return []
  return readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map(Number)
}

// The host pid whose death ends the sandbox: the agent, its PID 1 (ns), or QEMU (vm).
export function sandboxInitPid(name, id) {
  const pids = sandboxPids(name, id)
  if (RUNTIME === 'vm') return pids[0]
  return pids.find((p) => /NSpid:.*\s1$/m.test(readFileSync(`/proc/${p}/status`, 'utf8')))
}

// Whether `pid` is a live process (a zombie waiting for its reaper counts as dead).
export function alive(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return false
  }
}
