// Security suite (privileged tier): code inside a kilnd `ns` sandbox tries to escape, and every
// attempt must be contained. Each case asserts the outcome, and where it makes sense a positive
// control shows the probe itself works (so a "blocked" result cannot come from a broken probe).
//
// The network targets are built by this file in its own network namespaces (never real
// addresses): a fake internet (TEST-NET-3), a private-range host, a link-local "metadata"
// service, plus services on the host's loopback and on the host side of the sandbox's veth.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { createServer } from 'node:http'
import { randomBytes } from 'node:crypto'
import { writeFileSync, rmSync, existsSync, readFileSync } from 'node:fs'
import { Sandbox } from 'e2b'
import { startKilnd, waitFor, startPeer, removePeer } from '../kilnd/harness.mjs'

const T = { timeout: 90_000 }
const tag = randomBytes(3).toString('hex')
const ns = { inet: `ksi${tag}`, priv: `ksp${tag}`, meta: `ksm${tag}` }
const children = []
let kilnd, opts, sbx, other, hostServer, hostPort

// curl from inside the sandbox: the HTTP status, or "000" when no connection was made.
async function curl(s, url) {
  const r = await s.commands.run(`curl -s -m 4 -o /dev/null -w '%{http_code}' ${url} || true`)
  return r.stdout.trim()
}

async function sh(s, cmd, user = 'user') {
  try {
    const r = await s.commands.run(cmd, { user, timeoutMs: 60_000 })
    return { code: 0, out: r.stdout, err: r.stderr }
  } catch (e) {
    return { code: e.exitCode ?? -1, out: e.stdout ?? '', err: e.stderr ?? String(e) }
  }
}

before(async () => {
  kilnd = await startKilnd(['--pool-size', '1', '--memory-mb', '256', '--pids', '128', '--disk-mb', '64'])
  opts = kilnd.env()
  children.push(await startPeer(ns.inet, '203.0.113.1/24', '203.0.113.2/24', 8080))
  children.push(await startPeer(ns.priv, '10.99.77.1/24', '10.99.77.2/24', 8080))
  children.push(await startPeer(ns.meta, '169.254.0.1/16', '169.254.169.254/16', 80))
  hostServer = createServer((req, res) => res.end('host service'))
  await new Promise((r) => hostServer.listen(0, '0.0.0.0', r))
  hostPort = hostServer.address().port
  sbx = await Sandbox.create('base', opts)
  other = await Sandbox.create('base', opts)
})

after(async () => {
  for (const s of [sbx, other]) if (s) await Sandbox.kill(s.sandboxId, opts).catch(() => {})
  await kilnd?.stop()
  kilnd?.cleanup()
  for (const c of children) c.kill('SIGKILL')
  for (const n of Object.values(ns)) removePeer(n)
  hostServer?.close()
})

test('positive control: the fake internet is reachable through NAT', T, async () => {
  assert.equal(await curl(sbx, 'http://203.0.113.2:8080/'), '200')
})

test('1. host files cannot be read', T, async () => {
  const secret = `/root/kiln-secret-${tag}`
  writeFileSync(secret, 'host secret')
  try {
    const r = await sh(sbx, `cat ${secret}; cat /proc/1/root${secret}`, 'root')
    assert.notEqual(r.code, 0)
    assert.ok(!r.out.includes('host secret'))
  } finally {
    rmSync(secret)
  }
})

test('2. host files cannot be written', T, async () => {
  const path = `/tmp/kiln-escape-${tag}`
  const r = await sh(sbx, `echo pwned > ${path} && cat ${path}`, 'root')
  assert.equal(r.out, 'pwned\n')  // inside the sandbox's own /tmp
  assert.equal(existsSync(path), false)
})

test('3. host processes are invisible', T, async () => {
  const r = await sh(sbx, 'ps -e -o pid=,comm= | wc -l; ls /proc | grep -c "^[0-9]"')
  const [ps] = r.out.trim().split('\n').map(Number)
  assert.ok(ps < 20, `sandbox sees ${ps} processes`)
  const mine = await sh(sbx, `test -e /proc/${process.pid} && cat /proc/${process.pid}/cmdline; true`)
  assert.ok(!mine.out.includes('node'), 'the test runner is visible')
})

test('4. host processes cannot be signalled', T, async () => {
  const victim = spawn('sleep', ['300'], { stdio: 'ignore' })
  children.push(victim)
  const r = await sh(sbx, `kill -9 ${victim.pid}`, 'root')
  assert.notEqual(r.code, 0)
  assert.equal(victim.exitCode, null)
  assert.equal(victim.signalCode, null)
  process.kill(victim.pid, 0)  // still alive
})

test('5. ptrace is denied', T, async () => {
  const py = 'import ctypes,os,subprocess;p=subprocess.Popen(["sleep","30"]);l=ctypes.CDLL(None,use_errno=True);' +
    'r=l.ptrace(16,p.pid,0,0);print(r,ctypes.get_errno());p.kill()'
  const r = await sh(sbx, `python3 -c '${py}'`, 'root')
  assert.equal(r.out.trim(), '-1 1')  // EPERM
})

test('6. mount is denied, even for root', T, async () => {
  const r = await sh(sbx, 'mkdir -p /mnt/x && mount -t tmpfs none /mnt/x', 'root')
  assert.notEqual(r.code, 0)
  const proc = await sh(sbx, 'mount -t proc proc /mnt/x', 'root')
  assert.notEqual(proc.code, 0)
})

test('7. new user namespaces are denied', T, async () => {
  const u = await sh(sbx, 'unshare -U -r id')
  assert.notEqual(u.code, 0)
  const r = await sh(sbx, 'unshare -U -r id', 'root')
  assert.notEqual(r.code, 0)
  const n = await sh(sbx, 'unshare -n true', 'root')
  assert.notEqual(n.code, 0)
})

test('8. kernel modules cannot be loaded', T, async () => {
  const py = 'import ctypes;l=ctypes.CDLL(None,use_errno=True);r=l.syscall(313,0,b"",0);print(r,ctypes.get_errno())'
  const r = await sh(sbx, `python3 -c '${py}'`, 'root')
  assert.equal(r.out.trim(), '-1 1')  // finit_module: EPERM
  assert.equal(existsSync('/proc/modules') ? 'host has modules' : 'ok', 'ok')
})

test('9. raw devices are absent and cannot be created', T, async () => {
  const ls = await sh(sbx, 'ls /dev')
  for (const dev of ['sda', 'vda', 'mem', 'kmem', 'port', 'kvm']) {
    assert.ok(!ls.out.split(/\s+/).includes(dev), `/dev/${dev} is visible`)
  }
  const r = await sh(sbx, 'mknod /tmp/disk b 8 0 && head -c 512 /tmp/disk | wc -c', 'root')
  assert.notEqual(r.out.trim(), '512')
})

test('10. /proc/sys cannot be written', T, async () => {
  const r = await sh(sbx, 'echo 1 > /proc/sys/kernel/sysrq', 'root')
  assert.notEqual(r.code, 0)
  const h = await sh(sbx, 'echo evil > /proc/sys/kernel/hostname; hostname', 'root')
  assert.equal(readFileSync('/proc/sys/kernel/hostname', 'utf8').trim() === 'evil', false)
  assert.ok(h.out.length > 0)
})

test('11. /sys cannot be written', T, async () => {
  const r = await sh(sbx, 'echo 1 > /sys/kernel/mm/ksm/run || echo x > /sys/class/net/eth0/mtu', 'root')
  assert.notEqual(r.code, 0)
})

test('12. host loopback services are unreachable', T, async () => {
  // Positive control: the service answers on the host.
  assert.equal((await fetch(`http://127.0.0.1:${hostPort}/`)).status, 200)
  assert.equal(await curl(sbx, `http://127.0.0.1:${hostPort}/`), '000')
  const kp = new URL(kilnd.url).port
  assert.equal(await curl(sbx, `http://127.0.0.1:${kp}/health`), '000')
})

test('13. the host itself (veth side, other addresses) is unreachable', T, async () => {
  const gw = (await sh(sbx, "ip route 2>/dev/null | awk '/default/ {print $3}' || true")).out.trim() ||
    (await sh(sbx, "awk 'NR>1 && $2==\"00000000\" {print $3}' /proc/net/route")).out.trim()
  const addrs = execFileSync('hostname', ['-I'], { encoding: 'utf8' }).trim().split(/\s+/).filter((a) => a.includes('.'))
  const targets = [...addrs, '203.0.113.1', '10.99.77.1']
  if (/^[0-9.]+$/.test(gw)) targets.push(gw)
  for (const a of targets) {
    assert.equal(await curl(sbx, `http://${a}:${hostPort}/`), '000', `host address ${a} reachable`)
  }
})

test('14. another sandbox is unreachable', T, async () => {
  await other.commands.run('python3 -m http.server 8000 --bind 0.0.0.0', { background: true, timeoutMs: 0 })
  const addr = (await other.commands.run("hostname -I | awk '{print $1}'")).stdout.trim()
  assert.match(addr, /^\d+\.\d+\.\d+\.\d+$/)
  // Positive control: the server runs (reached inside `other` itself).
  await waitFor(async () => (await curl(other, `http://${addr}:8000/`)) === '200', { what: 'server in the other sandbox' })
  assert.equal(await curl(sbx, `http://${addr}:8000/`), '000')
})

test('15. private-range targets are unreachable', T, async () => {
  assert.equal(await curl(sbx, 'http://10.99.77.2:8080/'), '000')
})

test('16. link-local / metadata service is unreachable', T, async () => {
  assert.equal(await curl(sbx, 'http://169.254.169.254/'), '000')
})

test('17. a sandbox without internet access reaches nothing', T, async () => {
  const off = await Sandbox.create('base', { ...opts, allowInternetAccess: false })
  try {
    assert.equal(await curl(off, 'http://203.0.113.2:8080/'), '000')
  } finally {
    await off.kill()
  }
})

test('18. fork bomb is bounded by the pids limit', T, async () => {
  const s = await Sandbox.create('base', opts)
  try {
    // Fork until the kernel refuses; the children sleep with their output closed.
    const py = 'import os,time\nn=0\ntry:\n  while n < 2000:\n    if os.fork() == 0:\n' +
      '      os.close(1); os.close(2); time.sleep(30); os._exit(0)\n    n += 1\n' +
      'except OSError as e:\n  print(n, e.errno)\n'
    const r = await sh(s, `python3 -c '${py}'`)
    const [n, errno] = r.out.trim().split(' ').map(Number)
    assert.equal(errno, 11, `fork failed with ${r.out} ${r.err}`)  // EAGAIN from pids.max
    assert.ok(n > 10 && n < 128, `${n} forks succeeded with pids.max 128`)
    // The host is unaffected: it still forks.
    assert.equal(execFileSync('echo', ['host ok'], { encoding: 'utf8' }), 'host ok\n')
  } finally {
    await s.kill()
  }
})

test('19. memory bomb is OOM-killed inside the sandbox only', T, async () => {
  const s = await Sandbox.create('base', opts)
  try {
    const r = await sh(s, 'python3 -c "b=bytearray(1024*1024*1024); print(len(b))"')
    assert.notEqual(r.code, 0)
    assert.ok(!r.out.includes('1073741824'))
    // The sandbox (and its agent) survive.
    assert.equal((await s.commands.run('echo alive')).stdout, 'alive\n')
  } finally {
    await s.kill()
  }
})

test('20. disk fill stops at the sandbox disk limit', T, async () => {
  const s = await Sandbox.create('base', opts)
  try {
    const r = await sh(s, 'dd if=/dev/zero of=/home/user/fill bs=1M count=200 2>&1; du -m /home/user/fill | cut -f1')
    const mb = Number(r.out.trim().split('\n').pop())
    assert.ok(mb <= 64, `wrote ${mb} MiB with a 64 MiB disk`)
    assert.match(r.out, /No space left/)
    assert.equal((await s.commands.run('echo alive')).stdout, 'alive\n')
  } finally {
    await s.kill()
  }
})

test('21. timeout abuse: detached processes die with the sandbox at its timeout', T, async () => {
  const s = await Sandbox.create('base', { ...opts, timeoutMs: 3_000 })
  await sh(s, 'setsid nohup sleep 987 >/dev/null 2>&1 & (sleep 987 &) ; disown -a; true')
  const marker = (await sh(s, 'cat /proc/self/cgroup | head -1')).out
  assert.ok(marker.length > 0)
  await waitFor(async () => !(await s.isRunning()), { timeoutMs: 10_000, what: 'timeout' })
  // No process of that sandbox is left on the host: no `sleep 987` owned by the sandbox range
  // (the kill completes just after the sandbox stops answering).
  const left = () => execFileSync('sh', ['-c', 'ps -eo uid=,args= | awk \'$1 >= 100000 && $3 == 987\' | wc -l'],
    { encoding: 'utf8' }).trim()
  await waitFor(() => left() === '0', { timeoutMs: 5_000, what: 'the detached processes to die' })
})

test('22. chroot tricks stay inside the sandbox root', T, async () => {
  const py = 'import os;os.makedirs("/tmp/j",exist_ok=True);fd=os.open("/",os.O_RDONLY);os.chroot("/tmp/j");' +
    'os.fchdir(fd);[os.chdir("..") for _ in range(50)];os.chroot(".");print(open("/etc/hostname").read().strip())'
  const r = await sh(sbx, `python3 -c '${py}'`, 'root')
  if (r.code === 0) assert.equal(r.out.trim(), 'sandbox')
  else assert.match(r.err, /Operation not permitted|Permission/)
})

test('23. dangerous syscalls (keyctl, bpf, perf_event_open, reboot, settimeofday) are denied', T, async () => {
  const py = 'import ctypes;l=ctypes.CDLL(None,use_errno=True);out=[]\n' +
    'for nr,args in [(250,(0,0,0,0)),(321,(0,0,0)),(298,(0,0,-1,-1,0)),(169,(0,0,0,0)),(164,(0,0))]:\n' +
    '  r=l.syscall(nr,*args);out.append((r,ctypes.get_errno()))\nprint(out)'
  const r = await sh(sbx, `python3 -c '${py}'`, 'root')
  const results = JSON.parse(r.out.trim().replace(/\(/g, '[').replace(/\)/g, ']'))
  for (const [ret, err] of results) {
    assert.equal(ret, -1)
    assert.ok(err === 1 || err === 38 || err === 22, `errno ${err}`)  // EPERM (or ENOSYS/EINVAL: not reached)
  }
  const clock = await sh(sbx, 'date -s "2001-01-01"', 'root')
  assert.notEqual(clock.code, 0)
  assert.ok(new Date().getFullYear() > 2001)
})

test('24. the sandbox user has no capabilities and root only namespaced ones', T, async () => {
  const u = await sh(sbx, "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status")
  assert.match(u.out, /CapEff:\s+0000000000000000/)
  assert.match(u.out, /Seccomp:\s+2/)
  const r = await sh(sbx, "grep -E '^CapEff' /proc/self/status", 'root')
  const eff = BigInt('0x' + r.out.split(/\s+/)[1])
  const CAP_SYS_ADMIN = 1n << 21n, CAP_SYS_MODULE = 1n << 16n, CAP_SYS_PTRACE = 1n << 19n
  assert.equal(eff & (CAP_SYS_ADMIN | CAP_SYS_MODULE | CAP_SYS_PTRACE), 0n)
  // On the host, the sandbox's root is an unprivileged uid.
  const pid = (await sh(sbx, 'echo $$', 'root')).out.trim()
  assert.ok(pid.length > 0)
  const uids = execFileSync('sh', ['-c', "ps -eo uid=,comm= | awk '$2 == \"kiln-envd\" {print $1}'"], { encoding: 'utf8' })
  for (const uid of uids.trim().split('\n').filter(Boolean)) assert.ok(Number(uid) >= 100000, `envd runs as host uid ${uid}`)
})
