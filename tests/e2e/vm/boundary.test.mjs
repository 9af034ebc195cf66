// The vm runtime's boundary, through the official SDK: each sandbox is its own QEMU guest with
// its own kernel, sees nothing of the host, cannot reach the host's loopback services, keeps
// its disk writes to itself, and gets fresh randomness although all are restored from one
// memory snapshot. kilnd runs with --runtime vm (KILN_E2E_RUNTIME=vm).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { createServer } from 'node:http'
import { existsSync, writeFileSync, rmSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { Sandbox } from 'e2b'
import { Sandbox as CodeSandbox } from '@e2b/code-interpreter'
import { startKilnd, TEMPLATE_DIR, sandboxInitPid, RUNTIME, T } from '../kilnd/harness.mjs'

const VT = { timeout: 120_000 }
let kilnd, opts, web, webPort, hostSleep
const marker = `kiln-vm-marker-${randomBytes(4).toString('hex')}`

before(async () => {
  assert.equal(RUNTIME, 'vm', 'run this file with KILN_E2E_RUNTIME=vm')
  kilnd = await startKilnd(['--pool-size', '2'])
  opts = kilnd.env()
  // A service on the host's loopback (and every host address) that no sandbox may reach.
  web = createServer((_, res) => res.end('host secret'))
  await new Promise((resolve) => web.listen(0, '0.0.0.0', resolve))
  webPort = web.address().port
  // A host process and a host file the guests must not see.
  hostSleep = spawn('sleep', ['7171'], { stdio: 'ignore' })
  writeFileSync(`/tmp/${marker}`, 'host only')
})

after(async () => {
  hostSleep?.kill('SIGKILL')
  rmSync(`/tmp/${marker}`, { force: true })
  await new Promise((resolve) => (web ? web.close(resolve) : resolve()))
  await kilnd?.stop()
  kilnd?.cleanup()
})

test('the guest runs its own kernel on a QEMU CPU', VT, async () => {
  const sbx = await Sandbox.create('base', opts)
  try {
    const host = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim()
    const guest = (await sbx.commands.run('uname -r')).stdout.trim()
    assert.notEqual(guest, host)
    assert.match(guest, /^\d+\.\d+\.\d+-\d+-amd64$/, 'a Debian kernel')
    const cpuinfo = (await sbx.commands.run('grep -m1 "model name" /proc/cpuinfo')).stdout
    assert.match(cpuinfo, /QEMU/)
    // QEMU is what runs on the host for it: the init kilnd watches is a qemu-system process.
    const pid = sandboxInitPid(kilnd.name, sbx.sandboxId)
    assert.ok(pid, 'the sandbox has a process on the host')
    assert.match(execFileSync('ps', ['-o', 'comm=', '-p', String(pid)], { encoding: 'utf8' }), /qemu-system/)
  } finally {
    await sbx.kill()
  }
})

test('host processes and files are invisible', VT, async () => {
  const sbx = await Sandbox.create('base', opts)
  try {
    const ps = (await sbx.commands.run('ps -eo args')).stdout
    assert.doesNotMatch(ps, /sleep 7171/)
    assert.doesNotMatch(ps, /kilnd|node/)
    const n = Number((await sbx.commands.run('ls -d /proc/[0-9]* | wc -l')).stdout.trim())
    assert.ok(n > 0 && n < 200, `${n} processes in the guest`)
    const f = await sbx.commands.run(`test -e /tmp/${marker}; echo $?`)
    assert.equal(f.stdout, '1\n')
  } finally {
    await sbx.kill()
  }
})

test('the host\'s loopback and its own addresses are unreachable', VT, async () => {
  const sbx = await Sandbox.create('base', opts)
  try {
    // Positive control: the guest's network works (its own loopback, a server it starts).
    const self = await sbx.commands.run(
      'python3 -m http.server 8123 --bind 127.0.0.1 >/dev/null 2>&1 & for i in $(seq 50); do ' +
      'curl -s -o /dev/null -w "%{http_code}" http://127.0.0.1:8123/ && break; sleep 0.1; done')
    assert.equal(self.stdout.trim().slice(-3), '200')
    const gateway = (await sbx.commands.run("ip route 2>/dev/null | awk '/default/ {print $3}' || true")).stdout.trim()
    const targets = [`127.0.0.1:${webPort}`, `10.0.2.1:${webPort}`, `10.0.2.2:${webPort}`]
    if (gateway) targets.push(`${gateway}:${webPort}`)
    // The host side of sandbox links: the first addresses of kilnd's subnet.
    const [a, b] = kilnd.subnet.split('.')
    for (const last of [1, 5, 9]) targets.push(`${a}.${b}.0.${last}:${webPort}`)
    for (const t of targets) {
      const r = await sbx.commands.run(`curl -s -m 2 http://${t}/ || echo unreachable`)
      assert.doesNotMatch(r.stdout, /host secret/, `${t} reached the host`)
    }
  } finally {
    await sbx.kill()
  }
})

test('disk writes stay in their sandbox: not in the template, not in another sandbox', VT, async () => {
  const a = await Sandbox.create('base', opts)
  try {
    await a.commands.run(`echo written-by-a > /etc/${marker} && sync`, { user: 'root' })
    await a.files.write(`/home/user/${marker}`, 'a file of a')
    assert.equal((await a.commands.run(`cat /etc/${marker}`)).stdout, 'written-by-a\n')
    const b = await Sandbox.create('base', opts)
    try {
      assert.equal((await b.commands.run(`test -e /etc/${marker}; echo $?`)).stdout, '1\n')
      assert.equal((await b.commands.run(`test -e /home/user/${marker}; echo $?`)).stdout, '1\n')
    } finally {
      await b.kill()
    }
    assert.equal(existsSync(`${TEMPLATE_DIR}/base/rootfs/etc/${marker}`), false)
  } finally {
    await a.kill()
  }
  // A sandbox made after both are gone starts from the template again.
  const c = await Sandbox.create('base', opts)
  try {
    assert.equal((await c.commands.run(`test -e /etc/${marker}; echo $?`)).stdout, '1\n')
  } finally {
    await c.kill()
  }
})

test('sandboxes restored from one snapshot get different random bytes', VT, async () => {
  const read = 'head -c 32 /dev/urandom | od -An -tx1 | tr -d " \\n"'
  const [a, b] = await Promise.all([Sandbox.create('base', opts), Sandbox.create('base', opts)])
  try {
    const [ra, rb] = await Promise.all([a.commands.run(read), b.commands.run(read)])
    assert.match(ra.stdout, /^[0-9a-f]{64}$/)
    assert.notEqual(ra.stdout, rb.stdout)
  } finally {
    await Promise.all([a.kill(), b.kill()])
  }
})

test('code interpreters restored from one snapshot: kernels get fresh random generators', { timeout: 300_000 }, async () => {
  // Their kernels were started before the snapshot: without a reseed, random.random() would
  // give every sandbox the same sequence.
  const copts = { ...opts, requestTimeoutMs: 240_000 }
  const [a, b] = await Promise.all([CodeSandbox.create(copts), CodeSandbox.create(copts)])
  try {
    const cell = 'import random, numpy\nprint(random.random(), numpy.random.rand())'
    const [ra, rb] = await Promise.all([a.runCode(cell, { timeoutMs: 120_000 }), b.runCode(cell, { timeoutMs: 120_000 })])
    assert.equal(ra.error, undefined)
    assert.equal(rb.error, undefined)
    const [x, y] = [ra.logs.stdout.join(''), rb.logs.stdout.join('')]
    assert.match(x, /^0\.\d+ 0\.\d+\n$/)
    const [xr, xn] = x.trim().split(' ')
    const [yr, yn] = y.trim().split(' ')
    assert.notEqual(xr, yr, 'random.random() is the same in both sandboxes')
    assert.notEqual(xn, yn, 'numpy.random.rand() is the same in both sandboxes')
    // node's Math.random (V8) and crypto (OpenSSL) cannot be reseeded in place: the javascript
    // kernel gets a new node process after the restore.
    const js = "const c = require('crypto'); [c.randomBytes(16).toString('hex'), Math.random(), c.randomUUID(), process.cwd()].join(' ')"
    const [ja, jb] = await Promise.all([a.runCode(js, { language: 'javascript', timeoutMs: 120_000 }),
      b.runCode(js, { language: 'javascript', timeoutMs: 120_000 })])
    assert.equal(ja.error, undefined)
    assert.equal(jb.error, undefined)
    const [pa, pb] = [ja.text.replace(/'/g, '').split(' '), jb.text.replace(/'/g, '').split(' ')]
    assert.match(pa[0], /^[0-9a-f]{32}$/)
    assert.notEqual(pa[0], pb[0], 'crypto.randomBytes() is the same in both sandboxes')
    assert.notEqual(pa[1], pb[1], 'Math.random() is the same in both sandboxes')
    assert.notEqual(pa[2], pb[2], 'crypto.randomUUID() is the same in both sandboxes')
    assert.equal(pa[3], '/home/user', 'the new node process kept the working directory')
  } finally {
    await Promise.all([a.kill(), b.kill()])
  }
})

test('under TCG guest processes reuse one address layout (ASLR off); kilnd says so', VT, async () => {
  const said = kilnd.output.join('')
  const accel = said.match(/^kilnd: vm runtime: (\w+)/m)?.[1]
  assert.ok(accel, 'kilnd names its accelerator')
  const sbx = await Sandbox.create('base', opts)
  try {
    const setting = (await sbx.commands.run('cat /proc/sys/kernel/randomize_va_space')).stdout.trim()
    // Two processes map libc where the other did (with randomization they would not).
    const libc = 'grep -m1 "libc.so" /proc/self/maps | cut -d- -f1'
    const a = (await sbx.commands.run(libc)).stdout.trim()
    const b = (await sbx.commands.run(libc)).stdout.trim()
    assert.match(a, /^[0-9a-f]+$/)
    if (accel === 'tcg') {
      assert.match(said, /guest ASLR off/)
      assert.equal(setting, '0')
      assert.equal(a, b)
    } else {
      assert.doesNotMatch(said, /guest ASLR off/)
      assert.equal(setting, '2')
    }
  } finally {
    await sbx.kill()
  }
})

test('the guest clock is the host\'s, not the snapshot\'s', VT, async () => {
  const sbx = await Sandbox.create('base', opts)
  try {
    const guest = Number((await sbx.commands.run('date +%s')).stdout.trim())
    assert.ok(Math.abs(guest - Date.now() / 1000) < 5, `guest clock off by ${guest - Date.now() / 1000} s`)
  } finally {
    await sbx.kill()
  }
})
