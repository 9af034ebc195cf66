// `sudo` inside a kilnd `ns` sandbox, through the E2B SDK. Sandboxes run with no_new_privs, so
// the setuid /usr/bin/sudo cannot work; the template's /usr/local/bin/sudo is kiln-envd acting
// as a client of the agent (PID 1, the sandbox's root), which runs the command.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox, CommandExitError } from 'e2b'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { startKilnd, waitFor, T } from './harness.mjs'

let kilnd
let sbx

before(async () => {
  kilnd = await startKilnd(['--pool-size', '1'])
  sbx = await Sandbox.create('base', { ...kilnd.env(), timeoutMs: 600_000 })
})

after(async () => {
  await sbx?.kill()
  await kilnd?.stop()
  kilnd?.cleanup()
})

// Runs `cmd` as the default user (`user`); a non-zero exit comes back as the result, not a throw.
async function run(cmd, opts = {}) {
  try {
    return await sbx.commands.run(cmd, opts)
  } catch (e) {
    if (e instanceof CommandExitError) return e
    throw e
  }
}

test('sudo is the agent, /usr/bin/sudo is untouched', T, async () => {
  const r = await run('command -v sudo; readlink /usr/local/bin/sudo; test -u /usr/bin/sudo && echo setuid-kept; id -un')
  assert.equal(r.stdout, '/usr/local/bin/sudo\n/.kiln/envd\nsetuid-kept\nuser\n')
})

test('sudo id -u is 0', T, async () => {
  const r = await sbx.commands.run('sudo id -u')
  assert.equal(r.stdout, '0\n')
  assert.equal(r.exitCode, 0)
})

test('sudo -u nobody', T, async () => {
  assert.equal((await sbx.commands.run('sudo -u nobody id -un')).stdout, 'nobody\n')
})

test('SUDO_USER and the sudo environment', T, async () => {
  const r = await sbx.commands.run(`FOO=leak sudo sh -c 'echo "$SUDO_USER $SUDO_UID $USER $HOME $PATH [$FOO]"'`)
  assert.equal(r.stdout, 'user 1000 root /root /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin []\n')
  const e = await sbx.commands.run(`FOO=kept sudo -E BAR=set sh -c 'echo "$FOO $BAR"'`)
  assert.equal(e.stdout, 'kept set\n')
})

test('stdin is passed to the command', T, async () => {
  assert.equal((await sbx.commands.run('echo hi | sudo cat')).stdout, 'hi\n')
})

test('exit statuses come back', T, async () => {
  const f = await run('sudo false')
  assert.ok(f instanceof CommandExitError)
  assert.equal(f.exitCode, 1)
  const seven = await run(`sudo sh -c 'exit 7'`)
  assert.ok(seven instanceof CommandExitError)
  assert.equal(seven.exitCode, 7)
  const sig = await run(`sudo sh -c 'kill -TERM $$'`)
  assert.equal(sig.exitCode, 143)
})

test('files made with sudo belong to root', T, async () => {
  const r = await sbx.commands.run('sudo touch /root/x && sudo ls -l /root/x')
  assert.match(r.stdout, /^-\S+ 1 root root 0 .* \/root\/x\n$/)
  const denied = await run('ls /root')
  assert.equal(denied.exitCode, 2)  // still not readable without sudo
})

test('stderr of the command arrives on stderr', T, async () => {
  const r = await sbx.commands.run(`sudo sh -c 'echo out; echo oops >&2'`)
  assert.equal(r.stdout, 'out\n')
  assert.equal(r.stderr, 'oops\n')
})

test('sudo -i runs a login shell in root\'s home', T, async () => {
  assert.equal((await sbx.commands.run('sudo -i pwd')).stdout, '/root\n')
  assert.equal((await sbx.commands.run('cd /tmp && sudo pwd')).stdout, '/tmp\n')
})

test('a user outside group sudo is refused like sudo does it', T, async () => {
  await sbx.commands.run('useradd -m bob', { user: 'root' })
  const r = await run('sudo id -u', { user: 'bob' })
  assert.ok(r instanceof CommandExitError)
  assert.equal(r.exitCode, 1)
  assert.equal(r.stdout, '')
  assert.equal(r.stderr, 'bob is not in the sudoers file.\n')
  // Added to the group, bob may (membership is read on every call).
  await sbx.commands.run('usermod -aG sudo bob', { user: 'root' })
  assert.equal((await sbx.commands.run('sudo id -u', { user: 'bob' })).stdout, '0\n')
})

test('errors and small options', T, async () => {
  const nf = await run('sudo no-such-command')
  assert.equal(nf.exitCode, 1)
  assert.equal(nf.stderr, 'sudo: no-such-command: command not found\n')
  const bad = await run('sudo -x id')
  assert.equal(bad.exitCode, 1)
  assert.match(bad.stderr, /^sudo: invalid option -- 'x'\nusage: sudo/)
  assert.equal((await run('sudo -k; sudo -v; sudo -n true; echo ok')).stdout, 'ok\n')
  assert.match((await sbx.commands.run('sudo -l')).stdout, /User user may run the following commands on sandbox:\n {4}\(ALL : ALL\) NOPASSWD: ALL\n/)
})

test('^C reaches the command; a killed sudo hangs it up', T, async () => {
  // SIGINT to the client is forwarded to the command's process group.
  const r = await sbx.commands.run(`sudo sleep 30 & p=$!; sleep 0.5; kill -INT $p; wait $p; echo "rc=$?"`)
  assert.equal(r.stdout, 'rc=130\n')
  // SIGKILL to the client: the agent sees the connection drop and sends SIGHUP.
  const k = await sbx.commands.run(
    `sudo sleep 31 & p=$!; sleep 0.5; kill -KILL $p; ` +
    `for i in $(seq 50); do pgrep -x -f 'sleep 31' >/dev/null || break; sleep 0.1; done; ` +
    `pgrep -x -f 'sleep 31' || echo gone`)
  assert.equal(k.stdout, 'gone\n')
})

test('sudo works in a PTY too', T, async () => {
  let out = ''
  const pty = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => { out += new TextDecoder().decode(d) } })
  await sbx.pty.sendInput(pty.pid, new TextEncoder().encode('sudo id -un; exit\n'))
  await pty.wait().catch(() => {})
  assert.match(out, /\broot\r?\n/)
})

test('apt-get as root works through sudo (no network needed)', T, async () => {
  const r = await sbx.commands.run('sudo apt-get check && sudo dpkg -s sudo | head -1')
  assert.match(r.stdout, /Package: sudo\n$/)
})

test('sudo gives the sandbox\'s own root and nothing more', T, async () => {
  const status = `grep -E '^(CapEff|CapBnd|NoNewPrivs|Uid)' /proc/self/status`
  const viaSudo = await sbx.commands.run(`sudo ${status}`)
  const asRoot = await sbx.commands.run(status, { user: 'root' })
  assert.equal(viaSudo.stdout, asRoot.stdout)
  assert.match(viaSudo.stdout, /NoNewPrivs:\t1\n/)
  const mount = await run('sudo mount -t tmpfs none /mnt')
  assert.notEqual(mount.exitCode, 0)
  // Seen from the host, a sudo'd command runs as an unprivileged uid of the sandbox's range.
  const bg = await sbx.commands.run('sudo sleep 3232', { background: true, timeoutMs: 0 })
  try {
    const pid = await waitFor(() => execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' })
      .split('\n').map((l) => l.trim().split(/\s+/)).find((f) => f[1] === 'sleep' && f[2] === '3232')?.[0],
    { what: 'the sudo sleep on the host' })
    const uids = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^Uid:\t(\d+)\t(\d+)/m)
    assert.ok(uids, 'host status has a Uid line')
    assert.notEqual(uids[1], '0')
    assert.notEqual(uids[2], '0')
  } finally {
    await bg.kill()
  }
})
