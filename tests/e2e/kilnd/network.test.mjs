// Sandbox networking through the SDK: internet access through NAT, DNS relayed by kilnd, and
// allow_internet_access: false. The "internet" is a network namespace this file creates
// (TEST-NET-3), and the upstream resolver a fake DNS server on the host's loopback.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import { randomBytes } from 'node:crypto'
import { Sandbox } from 'e2b'
import { startKilnd, startPeer, removePeer, RUNTIME, T } from './harness.mjs'

const tag = randomBytes(3).toString('hex')
const inet = `kni${tag}`
const lan = `knl${tag}`
const children = []
let kilnd, opts, dns, queries = 0

// Answers A queries for *.kiln-test.example with 203.0.113.2; NXDOMAIN for anything else;
// no records (NOERROR) for other types.
function fakeDns() {
  const sock = createSocket('udp4')
  sock.on('message', (msg, rinfo) => {
    queries++
    let i = 12
    const labels = []
    while (msg[i] !== 0) {
      labels.push(msg.subarray(i + 1, i + 1 + msg[i]).toString())
      i += msg[i] + 1
    }
    const qtype = msg.readUInt16BE(i + 1)
    const question = msg.subarray(12, i + 5)
    const name = labels.join('.').toLowerCase()
    const known = name.endsWith('kiln-test.example')
    const header = Buffer.alloc(12)
    msg.copy(header, 0, 0, 2)
    header.writeUInt16BE(known ? 0x8180 : 0x8183, 2)
    header.writeUInt16BE(1, 4)
    const answer = known && qtype === 1
      ? Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 2])
      : Buffer.alloc(0)
    header.writeUInt16BE(answer.length ? 1 : 0, 6)
    sock.send(Buffer.concat([header, question, answer]), rinfo.port, rinfo.address)
  })
  return new Promise((resolve) => sock.bind(0, '127.0.0.1', () => resolve(sock)))
}

before(async () => {
  // A LAN the host is on (a public-looking range, as on some hosts): kilnd must block it.
  children.push(await startPeer(lan, '198.51.100.1/24', '198.51.100.2/24'))
  dns = await fakeDns()
  // kilnd first: it blocks the host's directly connected networks as they are at its start,
  // and the fake internet must not look like one.
  kilnd = await startKilnd(['--pool-size', '1', '--dns', `127.0.0.1:${dns.address().port}`])
  opts = kilnd.env()
  children.push(await startPeer(inet, '203.0.113.1/24', '203.0.113.2/24'))
})

after(async () => {
  await kilnd?.stop()
  kilnd?.cleanup()
  for (const c of children) c.kill('SIGKILL')
  for (const n of [inet, lan]) removePeer(n)
  dns?.close()
})

test('names resolve through kilnd and the internet is reachable by name', T, async () => {
  const sbx = await Sandbox.create('base', opts)
  try {
    const conf = await sbx.files.read('/etc/resolv.conf')
    // The relay's address: the sandbox's own loopback (ns) or the guest's gateway (vm).
    assert.match(conf, RUNTIME === 'vm' ? /^nameserver 10\.0\.2\.1$/m : /^nameserver 127\.0\.0\.53$/m)
    const r = await sbx.commands.run('getent ahostsv4 web.kiln-test.example | head -1')
    assert.match(r.stdout, /^203\.0\.113\.2\s/)
    assert.ok(queries > 0, 'the query reached the upstream resolver')
    const page = await sbx.commands.run("curl -s -o /dev/null -w '%{http_code}' http://web.kiln-test.example:8080/")
    assert.equal(page.stdout, '200')
    const missing = await sbx.commands.run('getent ahostsv4 nowhere.invalid || echo none')
    assert.equal(missing.stdout.trim(), 'none')
  } finally {
    await sbx.kill()
  }
})

test('without internet access: no DNS and no egress', T, async () => {
  const sbx = await Sandbox.create('base', { ...opts, allowInternetAccess: false })
  try {
    assert.equal((await sbx.getInfo()).allowInternetAccess, false)
    const before = queries
    const r = await sbx.commands.run('timeout 5 getent ahostsv4 web.kiln-test.example || echo failed')
    assert.equal(r.stdout.trim(), 'failed')
    assert.equal(queries, before)
    const c = await sbx.commands.run("curl -s -m 3 -o /dev/null -w '%{http_code}' http://203.0.113.2:8080/ || true")
    assert.equal(c.stdout, '000')
  } finally {
    await sbx.kill()
  }
})

test('resumed sandboxes keep DNS', T, async () => {
  const sbx = await Sandbox.create('base', opts)
  try {
    await sbx.pause()
    const again = await Sandbox.connect(sbx.sandboxId, opts)
    const r = await again.commands.run('getent ahostsv4 again.kiln-test.example | head -1')
    assert.match(r.stdout, /^203\.0\.113\.2\s/)
  } finally {
    await Sandbox.kill(sbx.sandboxId, opts)
  }
})

test('the networks the host is connected to are unreachable', T, async () => {
  const sbx = await Sandbox.create('base', opts)
  try {
    // Positive control: the host reaches it; the internet is reachable from the sandbox.
    assert.ok((await fetch('http://198.51.100.2:8080/')).ok)
    const ok = await sbx.commands.run("curl -s -m 3 -o /dev/null -w '%{http_code}' http://203.0.113.2:8080/ || true")
    assert.equal(ok.stdout, '200')
    const r = await sbx.commands.run("curl -s -m 3 -o /dev/null -w '%{http_code}' http://198.51.100.2:8080/ || true")
    assert.equal(r.stdout, '000')
  } finally {
    await sbx.kill()
  }
})
