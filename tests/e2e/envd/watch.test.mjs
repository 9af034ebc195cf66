// sandbox.files.watchDir: recursive and flat watches, entries, errors, timeouts, stop.
import assert from 'node:assert/strict'
import { before, describe, test } from 'node:test'
import { FileNotFoundError, FilesystemEventType, FileType, InvalidArgumentError, TimeoutError } from 'e2b'
import { createSandbox, HOME, rejectsWith, sleep, T, uniq, waitFor } from './helpers.mjs'

let sbx
before(async () => {
  sbx = await createSandbox()
})

// Starts a watch that records every event; `has(type, name)` waits for one.
async function watch(dir, opts = {}) {
  const w = { events: [], exits: [] }
  w.handle = await sbx.files.watchDir(dir, (e) => w.events.push(e), {
    onExit: (err) => w.exits.push(err ?? null),
    ...opts,
  })
  w.has = (type, name) =>
    waitFor(() => w.events.find((e) => e.type === type && e.name === name), {
      timeoutMs: 5000,
      what: `${type} event for ${name}; got ${JSON.stringify(w.events.map((e) => [e.type, e.name]))}`,
    })
  return w
}

describe('files.watchDir', () => {
  test('recursive watch reports create, write and remove in a nested dir', T, async () => {
    const dir = `${HOME}/${uniq('watch-rec')}`
    await sbx.files.makeDir(`${dir}/nested/deep`)
    const w = await watch(dir, { recursive: true })
    try {
      await sbx.files.write(`${dir}/nested/deep/f.txt`, 'one')
      await w.has(FilesystemEventType.CREATE, 'nested/deep/f.txt')
      await w.has(FilesystemEventType.WRITE, 'nested/deep/f.txt')

      await sbx.commands.run(`echo more >> ${dir}/nested/deep/f.txt`)
      await waitFor(
        () => w.events.filter((e) => e.type === FilesystemEventType.WRITE && e.name === 'nested/deep/f.txt').length >= 2,
        { timeoutMs: 5000, what: 'second write event' }
      )

      await sbx.files.rename(`${dir}/nested/deep/f.txt`, `${dir}/nested/g.txt`)
      await w.has(FilesystemEventType.RENAME, 'nested/deep/f.txt')
      await w.has(FilesystemEventType.CREATE, 'nested/g.txt')

      await sbx.commands.run(`chmod 600 ${dir}/nested/g.txt`)
      await w.has(FilesystemEventType.CHMOD, 'nested/g.txt')

      await sbx.files.remove(`${dir}/nested/g.txt`)
      await w.has(FilesystemEventType.REMOVE, 'nested/g.txt')
      for (const e of w.events) assert.equal(e.entry, undefined, 'no entry without includeEntry')
    } finally {
      await w.handle.stop()
    }
  })

  test('recursive watch follows directories created after it started', T, async () => {
    const dir = `${HOME}/${uniq('watch-new')}`
    await sbx.files.makeDir(dir)
    const w = await watch(dir, { recursive: true })
    try {
      await sbx.files.makeDir(`${dir}/later`)
      await w.has(FilesystemEventType.CREATE, 'later')
      await sleep(200) // let the agent add a watch for the new directory
      await sbx.files.write(`${dir}/later/x.txt`, 'x')
      await w.has(FilesystemEventType.CREATE, 'later/x.txt')
    } finally {
      await w.handle.stop()
    }
  })

  test('a non-recursive watch reports direct children only', T, async () => {
    const dir = `${HOME}/${uniq('watch-flat')}`
    await sbx.files.makeDir(`${dir}/sub`)
    const w = await watch(dir)
    try {
      await sbx.files.write(`${dir}/sub/inner.txt`, 'inner')
      await sbx.files.write(`${dir}/top.txt`, 'top')
      await w.has(FilesystemEventType.CREATE, 'top.txt')
      await sleep(300)
      assert.ok(
        !w.events.some((e) => e.name.includes('inner.txt')),
        `unexpected nested events ${JSON.stringify(w.events)}`
      )
    } finally {
      await w.handle.stop()
    }
  })

  test('includeEntry attaches the entry info', T, async () => {
    const dir = `${HOME}/${uniq('watch-entry')}`
    await sbx.files.makeDir(dir)
    const w = await watch(dir, { includeEntry: true })
    try {
      await sbx.files.write(`${dir}/e.txt`, 'entry')
      const ev = await w.has(FilesystemEventType.WRITE, 'e.txt')
      await waitFor(() => w.events.find((e) => e.entry && e.entry.size === 5), {
        timeoutMs: 5000,
        what: 'an event whose entry has the final size',
      })
      assert.ok(ev.entry, 'write event without entry')
      assert.equal(ev.entry.name, 'e.txt')
      assert.equal(ev.entry.path, `${dir}/e.txt`)
      assert.equal(ev.entry.type, FileType.FILE)
      assert.equal(ev.entry.owner, 'user')
    } finally {
      await w.handle.stop()
    }
  })

  test('stop() ends the watch and calls onExit once', T, async () => {
    const dir = `${HOME}/${uniq('watch-stop')}`
    await sbx.files.makeDir(dir)
    const w = await watch(dir)
    await w.handle.stop()
    await waitFor(() => w.exits.length > 0, { timeoutMs: 5000, what: 'onExit' })
    await sbx.files.write(`${dir}/after.txt`, 'x')
    await sleep(300)
    assert.equal(w.events.length, 0)
    assert.equal(w.exits.length, 1)
  })

  test('timeoutMs ends the watch with a TimeoutError in onExit', T, async () => {
    const dir = `${HOME}/${uniq('watch-timeout')}`
    await sbx.files.makeDir(dir)
    const w = await watch(dir, { timeoutMs: 1000 })
    await waitFor(() => w.exits.length > 0, { timeoutMs: 8000, what: 'onExit after the timeout' })
    assert.ok(w.exits[0] instanceof TimeoutError, `onExit got ${w.exits[0]?.constructor?.name}: ${w.exits[0]?.message}`)
  })

  test('watching a missing dir or a file fails', T, async () => {
    await rejectsWith(sbx.files.watchDir(`${HOME}/${uniq('nope')}`, () => {}), FileNotFoundError)
    const f = `${HOME}/${uniq('watch-file')}.txt`
    await sbx.files.write(f, 'x')
    await rejectsWith(sbx.files.watchDir(f, () => {}), InvalidArgumentError)
  })
})
