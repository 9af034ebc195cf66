// sandbox.files: write, read, list, exists, getInfo, makeDir, rename, remove (watchDir has its own file).
import assert from 'node:assert/strict'
import { before, describe, test } from 'node:test'
import { FileNotFoundError, FileType, InvalidArgumentError } from 'e2b'
import { createSandbox, ENVD_URL, HOME, rejectsWith, T, uniq } from './helpers.mjs'

let sbx
let root // a fresh directory for this file's tests
before(async () => {
  sbx = await createSandbox()
  root = `${HOME}/${uniq('files')}`
})

let n = 0
const p = (name) => `${root}/${++n}-${name}`

function bytes(len, seed = 7) {
  const b = new Uint8Array(len)
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed) & 0xff
  return b
}

async function collect(stream) {
  const parts = []
  for await (const chunk of stream) parts.push(Buffer.from(chunk))
  return Buffer.concat(parts)
}

function streamOf(chunks) {
  return new ReadableStream({
    start(controller) {
      for (const c of chunks) controller.enqueue(typeof c === 'string' ? new TextEncoder().encode(c) : c)
      controller.close()
    },
  })
}

describe('files.write / files.read', () => {
  test('string round trip; WriteInfo names the file', T, async () => {
    const path = p('hello.txt')
    const info = await sbx.files.write(path, 'Hello, kiln! ünïcödé\n')
    assert.equal(info.name, path.split('/').pop())
    assert.equal(info.path, path)
    assert.equal(info.type, FileType.FILE)
    assert.equal(await sbx.files.read(path), 'Hello, kiln! ünïcödé\n')
    // The file really is in the sandbox.
    assert.equal((await sbx.commands.run(`cat ${path}`)).stdout, 'Hello, kiln! ünïcödé\n')
  })

  test('relative paths resolve against the user home; parents are created', T, async () => {
    const rel = `${uniq('rel')}/a/b/c.txt`
    const info = await sbx.files.write(rel, 'nested')
    assert.equal(info.path, `${HOME}/${rel}`)
    assert.equal(await sbx.files.read(`${HOME}/${rel}`), 'nested')
    assert.equal(await sbx.files.read(rel), 'nested')
    const owner = await sbx.commands.run(`stat -c %U:%G ${HOME}/${rel.split('/')[0]}/a ${HOME}/${rel}`)
    assert.equal(owner.stdout, 'user:user\nuser:user\n')
  })

  test('bytes (ArrayBuffer) round trip, read as bytes', T, async () => {
    const path = p('bin.dat')
    const data = bytes(70_000)
    await sbx.files.write(path, data.buffer)
    const back = await sbx.files.read(path, { format: 'bytes' })
    assert.ok(back instanceof Uint8Array)
    assert.deepEqual(Buffer.from(back), Buffer.from(data))
    const sum = await sbx.commands.run(`wc -c < ${path}`)
    assert.equal(sum.stdout.trim(), '70000')
  })

  test('Blob round trip, read as blob', T, async () => {
    const path = p('blob.txt')
    await sbx.files.write(path, new Blob(['blob ', 'content']))
    const blob = await sbx.files.read(path, { format: 'blob' })
    assert.ok(blob instanceof Blob)
    assert.equal(await blob.text(), 'blob content')
  })

  test('ReadableStream upload, read as stream', T, async () => {
    const path = p('stream.bin')
    const chunks = [bytes(1000, 1), bytes(65_536, 2), bytes(3, 3), 'tail']
    const info = await sbx.files.write(path, streamOf(chunks))
    assert.equal(info.path, path)
    const expected = Buffer.concat(chunks.map((c) => Buffer.from(c)))
    const stream = await sbx.files.read(path, { format: 'stream' })
    assert.ok(stream instanceof ReadableStream)
    assert.deepEqual(await collect(stream), expected)
  })

  test('several files in one call', T, async () => {
    const a = p('multi-a.txt')
    const b = p('multi/b.txt')
    const c = p('multi-c.bin')
    const infos = await sbx.files.write([
      { path: a, data: 'A' },
      { path: b, data: new Blob(['B']) },
      { path: c, data: bytes(10).buffer },
    ])
    assert.ok(Array.isArray(infos))
    assert.deepEqual(infos.map((i) => i.path).sort(), [a, b, c].sort())
    assert.equal(await sbx.files.read(a), 'A')
    assert.equal(await sbx.files.read(b), 'B')
    assert.deepEqual(Buffer.from(await sbx.files.read(c, { format: 'bytes' })), Buffer.from(bytes(10)))
  })

  test('writeFiles is the array form', T, async () => {
    const a = p('wf-a.txt')
    const infos = await sbx.files.writeFiles([{ path: a, data: 'wf' }])
    assert.equal(infos.length, 1)
    assert.equal(infos[0].path, a)
    assert.equal(await sbx.files.read(a), 'wf')
  })

  test('gzip upload and gzip download', T, async () => {
    const path = p('gz.txt')
    const text = 'compress me please '.repeat(5000)
    const info = await sbx.files.write(path, text, { gzip: true })
    assert.equal(info.path, path)
    // Stored uncompressed.
    assert.equal((await sbx.commands.run(`wc -c < ${path}`)).stdout.trim(), String(text.length))
    assert.equal(await sbx.files.read(path, { gzip: true }), text)
    assert.equal(await sbx.files.read(path), text)
  })

  test('raw gzip download carries Content-Encoding: gzip', T, async () => {
    // Big enough that no minimum-size rule skips compression.
    const path = p('gz-raw.txt')
    const body = 'raw gzip body '.repeat(2000)
    await sbx.files.write(path, body)
    const res = await fetch(`${ENVD_URL}/files?path=${encodeURIComponent(path)}`, {
      headers: { 'Accept-Encoding': 'gzip' },
    })
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('content-encoding'), 'gzip')
    // fetch decodes the gzip body transparently.
    assert.equal(await res.text(), body)
  })

  test('octet-stream upload (useOctetStream)', T, async () => {
    const path = p('octet.txt')
    await sbx.files.write(path, 'octet body', { useOctetStream: true })
    assert.equal(await sbx.files.read(path), 'octet body')
  })

  test('empty file', T, async () => {
    const path = p('empty.txt')
    await sbx.files.write(path, '')
    assert.equal(await sbx.files.read(path), '')
    assert.equal((await sbx.files.read(path, { format: 'bytes' })).length, 0)
    assert.equal((await sbx.files.getInfo(path)).size, 0)
  })

  test('overwrite replaces the content', T, async () => {
    const path = p('over.txt')
    await sbx.files.write(path, 'a long first version')
    await sbx.files.write(path, 'v2')
    assert.equal(await sbx.files.read(path), 'v2')
  })

  test('write as root creates a root-owned file', T, async () => {
    const path = `/root/${uniq('rootfile')}.txt`
    await sbx.files.write(path, 'root data', { user: 'root' })
    assert.equal(await sbx.files.read(path, { user: 'root' }), 'root data')
    const st = await sbx.commands.run(`stat -c %U:%G ${path}`, { user: 'root' })
    assert.equal(st.stdout, 'root:root\n')
    assert.equal((await sbx.files.getInfo(path, { user: 'root' })).owner, 'root')
  })

  test('a large file (8 MiB) round trip, read as bytes and as a stream', T, async () => {
    const path = p('large.bin')
    const data = bytes(8 << 20, 5)
    await sbx.files.write(path, new Blob([data]))
    const back = await sbx.files.read(path, { format: 'bytes' })
    assert.equal(back.length, data.length)
    assert.ok(Buffer.from(back).equals(Buffer.from(data)), 'bytes differ')
    const streamed = await collect(await sbx.files.read(path, { format: 'stream' }))
    assert.ok(streamed.equals(Buffer.from(data)), 'streamed bytes differ')
    assert.equal((await sbx.files.getInfo(path)).size, data.length)
  })

  test('relative paths for root resolve against /root', T, async () => {
    const rel = `${uniq('rootrel')}.txt`
    const info = await sbx.files.write(rel, 'r', { user: 'root' })
    assert.equal(info.path, `/root/${rel}`)
    assert.equal((await sbx.files.getInfo(rel, { user: 'root' })).path, `/root/${rel}`)
  })

  test('reading a missing file is FileNotFoundError', T, async () => {
    await rejectsWith(sbx.files.read(p('missing.txt')), FileNotFoundError)
    await rejectsWith(sbx.files.read(p('missing.txt'), { format: 'stream' }), FileNotFoundError)
  })

  test('reading a directory is an InvalidArgumentError', T, async () => {
    await rejectsWith(sbx.files.read('/tmp'), InvalidArgumentError)
  })

  test('metadata on write is returned and reported by getInfo', T, async () => {
    const path = p('meta.txt')
    const info = await sbx.files.write(path, 'm', { metadata: { purpose: 'e2e test', 'Mixed-Case': 'V 1' } })
    assert.deepEqual(info.metadata, { purpose: 'e2e test', 'mixed-case': 'V 1' })
    const st = await sbx.files.getInfo(path)
    assert.deepEqual(st.metadata, { purpose: 'e2e test', 'mixed-case': 'V 1' })
    // A later upload without metadata clears it.
    await sbx.files.write(path, 'm2')
    assert.equal((await sbx.files.getInfo(path)).metadata, undefined)
  })

  test('gzip round trip is byte-exact for binary data', T, async () => {
    const path = p('gz.bin')
    const data = bytes(200_000, 9)
    await sbx.files.write(path, data.buffer, { gzip: true })
    const back = await sbx.files.read(path, { format: 'bytes', gzip: true })
    assert.deepEqual(Buffer.from(back), Buffer.from(data))
  })
})

describe('files.list', () => {
  test('lists a directory, with depth', T, async () => {
    const d = p('tree')
    await sbx.files.write([
      { path: `${d}/a.txt`, data: 'a' },
      { path: `${d}/sub/b.txt`, data: 'bb' },
      { path: `${d}/sub/deeper/c.txt`, data: 'ccc' },
    ])
    const names = (entries) => entries.map((e) => e.path.slice(d.length + 1)).sort()

    const one = await sbx.files.list(d)
    assert.deepEqual(names(one), ['a.txt', 'sub'])
    const a = one.find((e) => e.name === 'a.txt')
    assert.equal(a.type, FileType.FILE)
    assert.equal(a.size, 1)
    assert.equal(a.path, `${d}/a.txt`)
    assert.equal(one.find((e) => e.name === 'sub').type, FileType.DIR)

    assert.deepEqual(names(await sbx.files.list(d, { depth: 2 })), ['a.txt', 'sub', 'sub/b.txt', 'sub/deeper'])
    assert.deepEqual(names(await sbx.files.list(d, { depth: 3 })), [
      'a.txt',
      'sub',
      'sub/b.txt',
      'sub/deeper',
      'sub/deeper/c.txt',
    ])
  })

  test('lists an empty directory as []', T, async () => {
    const d = p('empty-dir')
    await sbx.files.makeDir(d)
    assert.deepEqual(await sbx.files.list(d), [])
  })

  test('list errors: missing dir, a file, depth < 1', T, async () => {
    await rejectsWith(sbx.files.list(p('nope')), FileNotFoundError)
    const f = p('plain.txt')
    await sbx.files.write(f, 'x')
    await rejectsWith(sbx.files.list(f), InvalidArgumentError)
    await rejectsWith(sbx.files.list(root, { depth: 0 }), InvalidArgumentError)
  })
})

describe('files.exists / files.getInfo', () => {
  test('exists', T, async () => {
    const f = p('exists.txt')
    assert.equal(await sbx.files.exists(f), false)
    await sbx.files.write(f, 'x')
    assert.equal(await sbx.files.exists(f), true)
    assert.equal(await sbx.files.exists('/tmp'), true)
  })

  test('getInfo of a file', T, async () => {
    const f = p('info.txt')
    const before = Date.now()
    await sbx.files.write(f, 'hello')
    const i = await sbx.files.getInfo(f)
    assert.equal(i.name, f.split('/').pop())
    assert.equal(i.path, f)
    assert.equal(i.type, FileType.FILE)
    assert.equal(i.size, 5)
    assert.equal(i.mode, 0o644)
    assert.equal(i.permissions, '-rw-r--r--')
    assert.equal(i.owner, 'user')
    assert.equal(i.group, 'user')
    assert.ok(i.modifiedTime instanceof Date)
    assert.ok(Math.abs(i.modifiedTime.getTime() - before) < 60_000, `modifiedTime ${i.modifiedTime.toISOString()}`)
    assert.equal(i.symlinkTarget, undefined)

    await sbx.commands.run(`chmod 600 ${f}; touch -d '2020-01-02T03:04:05Z' ${f}`)
    const j = await sbx.files.getInfo(f)
    assert.equal(j.mode, 0o600)
    assert.equal(j.permissions, '-rw-------')
    assert.equal(j.modifiedTime.toISOString(), '2020-01-02T03:04:05.000Z')
  })

  test('getInfo of a directory', T, async () => {
    const d = p('info-dir')
    await sbx.files.makeDir(d)
    const i = await sbx.files.getInfo(d)
    assert.equal(i.type, FileType.DIR)
    assert.equal(i.mode, 0o755)
    assert.equal(i.permissions, 'drwxr-xr-x')
    assert.equal(i.owner, 'user')
  })

  test('getInfo of a symlink reports its target', T, async () => {
    const target = p('target.txt')
    const link = p('link.txt')
    await sbx.files.write(target, 'target!')
    await sbx.commands.run(`ln -s ${target} ${link}`)
    const i = await sbx.files.getInfo(link)
    assert.equal(i.name, link.split('/').pop())
    assert.equal(i.path, link)
    assert.equal(i.symlinkTarget, target)
    // Upstream envd reports the type and mode of the target and an ls-style "L" permission string.
    assert.equal(i.type, FileType.FILE)
    assert.match(i.permissions, /^L/)

    // Relative link to a directory: the target is reported as an absolute path.
    const dirLink = p('dirlink')
    await sbx.commands.run(`ln -s . ${dirLink}`)
    const j = await sbx.files.getInfo(dirLink)
    assert.equal(j.symlinkTarget, root)
    assert.equal(j.type, FileType.DIR)
    // Reading through the link works.
    assert.equal(await sbx.files.read(link), 'target!')
  })

  test('getInfo of a missing path is FileNotFoundError', T, async () => {
    await rejectsWith(sbx.files.getInfo(p('ghost')), FileNotFoundError)
  })
})

describe('files.makeDir / rename / remove', () => {
  test('makeDir returns true, then false when it exists; creates parents', T, async () => {
    const top = p('mk')
    const d = `${top}/a/b`
    assert.equal(await sbx.files.makeDir(d), true)
    assert.equal(await sbx.files.makeDir(d), false)
    const i = await sbx.files.getInfo(d)
    assert.equal(i.type, FileType.DIR)
    assert.equal(i.owner, 'user')
    const parent = await sbx.files.getInfo(`${top}/a`)
    assert.equal(parent.type, FileType.DIR)
    assert.equal(parent.owner, 'user')
  })

  test('makeDir over an existing file fails', T, async () => {
    const f = p('file-not-dir')
    await sbx.files.write(f, 'x')
    await rejectsWith(sbx.files.makeDir(f), InvalidArgumentError)
  })

  test('makeDir as root in /root', T, async () => {
    const d = `/root/${uniq('rootdir')}`
    assert.equal(await sbx.files.makeDir(d, { user: 'root' }), true)
    assert.equal((await sbx.files.getInfo(d, { user: 'root' })).owner, 'root')
  })

  test('rename moves a file and returns the new entry', T, async () => {
    const a = p('old-name.txt')
    const b = p('new/dir/new-name.txt')
    await sbx.files.write(a, 'moving')
    const i = await sbx.files.rename(a, b)
    assert.equal(i.path, b)
    assert.equal(i.name, 'new-name.txt')
    assert.equal(i.type, FileType.FILE)
    assert.equal(await sbx.files.exists(a), false)
    assert.equal(await sbx.files.read(b), 'moving')
  })

  test('rename of a directory moves its content', T, async () => {
    const a = p('dir-a')
    const b = p('dir-b')
    await sbx.files.write(`${a}/inner.txt`, 'inner')
    const i = await sbx.files.rename(a, b)
    assert.equal(i.type, FileType.DIR)
    assert.equal(await sbx.files.read(`${b}/inner.txt`), 'inner')
    assert.equal(await sbx.files.exists(a), false)
  })

  test('rename of a missing path is FileNotFoundError', T, async () => {
    await rejectsWith(sbx.files.rename(p('missing-src'), p('dst')), FileNotFoundError)
  })

  test('remove deletes files and whole trees; a missing path is fine', T, async () => {
    const f = p('rm.txt')
    const d = p('rm-tree')
    await sbx.files.write([
      { path: f, data: 'x' },
      { path: `${d}/x/y/z.txt`, data: 'z' },
    ])
    await sbx.files.remove(f)
    assert.equal(await sbx.files.exists(f), false)
    await sbx.files.remove(d)
    assert.equal(await sbx.files.exists(d), false)
    await sbx.files.remove(p('never-existed'))
  })
})
