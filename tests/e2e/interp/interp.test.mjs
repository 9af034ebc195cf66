// The official @e2b/code-interpreter SDK against kilnd: code cells run by kiln-interp in the
// code-interpreter-v1 template (Jupyter kernels over ZeroMQ), through kilnd's proxy.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox } from '@e2b/code-interpreter'
import { startKilnd, waitFor, RUNTIME, T } from '../kilnd/harness.mjs'

let kilnd
let opts
let sbx

// Cells that start a kernel, install a package or print 100k lines: minutes under TCG (vm).
const SLOW_CELL = RUNTIME === 'vm' ? { timeoutMs: 240_000 } : {}

// Tracebacks keep IPython's colours (as E2B's do); tests read them without.
const plain = (s) => s.replace(/\x1b\[[0-9;]*m/g, '')

before(async () => {
  kilnd = await startKilnd(['--pool-size', '0', '--interp-pool-size', '1'])
  opts = kilnd.env()
  // Context create/restart starts a kernel: ~40 s under TCG (vm runtime), past the SDK's 60 s
  // request timeout when two run back to back.
  const slow = RUNTIME === 'vm' ? { requestTimeoutMs: 240_000 } : {}
  sbx = await Sandbox.create({ ...opts, ...slow, envs: { GLOBAL_VAR: 'from-create' }, timeoutMs: 1_200_000 })
})

after(async () => {
  await sbx?.kill().catch(() => {})
  await kilnd?.stop()
  kilnd?.cleanup()
})

test('state persists across cells; execution count and main result text', T, async () => {
  const a = await sbx.runCode('x = 41\nx += 1')
  assert.equal(a.error, undefined)
  const b = await sbx.runCode('x')
  assert.equal(b.text, '42')
  assert.equal(b.results.length, 1)
  assert.equal(b.results[0].isMainResult, true)
  assert.ok(b.executionCount > a.executionCount, `${b.executionCount} > ${a.executionCount}`)
  const c = await sbx.runCode('"a string"')
  assert.equal(c.text, 'a string')
})

test('stdout and stderr arrive through callbacks and logs', T, async () => {
  const out = []
  const err = []
  const e = await sbx.runCode('import sys\nprint("to out")\nprint("to err", file=sys.stderr)', {
    onStdout: (m) => out.push(m.line), onStderr: (m) => err.push(m.line),
  })
  assert.deepEqual(e.logs.stdout, ['to out\n'])
  assert.deepEqual(e.logs.stderr, ['to err\n'])
  assert.deepEqual(out, ['to out\n'])
  assert.deepEqual(err, ['to err\n'])
})

test('errors carry name, value and traceback; the context stays usable', T, async () => {
  const errors = []
  const e = await sbx.runCode('def f():\n    raise ValueError("bad value 7")\nf()', { onError: (x) => errors.push(x) })
  assert.equal(e.error.name, 'ValueError')
  assert.equal(e.error.value, 'bad value 7')
  assert.match(plain(e.error.traceback), /ValueError: bad value 7/)
  assert.match(plain(e.error.traceback), /----> 3 f\(\)/)
  assert.equal(errors.length, 1)
  const ok = await sbx.runCode('1 + 1')
  assert.equal(ok.text, '2')
  assert.equal(ok.error, undefined)
})

test('a matplotlib figure gives a PNG that decodes', T, async () => {
  const e = await sbx.runCode(
    'import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title("squares")\nplt.show()')
  assert.equal(e.error, undefined)
  const png = e.results.find((r) => r.png)
  assert.ok(png, JSON.stringify(e.results.map((r) => Object.keys(r))))
  const bytes = Buffer.from(png.png, 'base64')
  assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
  // IHDR: width and height of a real image.
  assert.equal(bytes.subarray(12, 16).toString('latin1'), 'IHDR')
  assert.ok(bytes.readUInt32BE(16) > 100 && bytes.readUInt32BE(20) > 100)
  assert.deepEqual(png.extra ?? {}, {})
})

test('charts: line, scatter, bar, pie, box and whisker, superchart with their values', T, async () => {
  const chartOf = async (code) => {
    const e = await sbx.runCode('import matplotlib.pyplot as plt\nimport numpy as np\n' + code + '\nplt.show()')
    assert.equal(e.error, undefined, e.error && plain(e.error.traceback))
    const r = e.results.find((x) => x.chart)
    assert.ok(r, `no chart in ${JSON.stringify(e.results.map((x) => Object.keys(x.raw)))}`)
    assert.ok(r.png, 'the chart comes with its PNG')
    return r.chart
  }
  const line = await chartOf('fig, ax = plt.subplots()\nax.plot([1, 2, 3], [1, 4, 9], label="squares")\n' +
    'ax.set_title("Squares")\nax.set_xlabel("Time (s)")\nax.set_ylabel("Value")')
  assert.deepEqual(line, {
    type: 'line', title: 'Squares', x_label: 'Time (s)', y_label: 'Value', x_unit: 's', y_unit: null,
    x_ticks: [1, 1.25, 1.5, 1.75, 2, 2.25, 2.5, 2.75, 3],
    x_tick_labels: ['1.00', '1.25', '1.50', '1.75', '2.00', '2.25', '2.50', '2.75', '3.00'], x_scale: 'linear',
    y_ticks: [1, 2, 3, 4, 5, 6, 7, 8, 9], y_tick_labels: ['1', '2', '3', '4', '5', '6', '7', '8', '9'],
    y_scale: 'linear', elements: [{ label: 'squares', points: [[1, 1], [2, 4], [3, 9]] }],
  })
  const scatter = await chartOf('fig, ax = plt.subplots()\nax.scatter([1, 2, 3], [3, 1, 2], label="pts")')
  assert.equal(scatter.type, 'scatter')
  assert.deepEqual(scatter.elements, [{ label: 'pts', points: [[1, 3], [2, 1], [3, 2]] }])
  assert.deepEqual(scatter.x_ticks, [1, 1.25, 1.5, 1.75, 2, 2.25, 2.5, 2.75, 3])
  const bar = await chartOf('fig, ax = plt.subplots()\nax.bar(["a", "b", "c"], [3, 5, 2], label="sales")\nax.set_title("Sales")')
  assert.deepEqual(bar, {
    type: 'bar', title: 'Sales', x_label: null, y_label: null, x_unit: null, y_unit: null,
    elements: [{ label: 'a', value: 3, group: 'sales' }, { label: 'b', value: 5, group: 'sales' },
      { label: 'c', value: 2, group: 'sales' }],
  })
  const pie = await chartOf('fig, ax = plt.subplots()\nax.pie([1, 2, 3], labels=["x", "y", "z"])')
  assert.deepEqual(pie, {
    type: 'pie', title: null,
    elements: [{ label: 'x', angle: 60, radius: 1 }, { label: 'y', angle: 120, radius: 1 }, { label: 'z', angle: 180, radius: 1 }],
  })
  const box = await chartOf('fig, ax = plt.subplots()\nax.boxplot([[1, 2, 3, 4, 5, 20], [2, 3, 4, 5, 6]], labels=["A", "B"])')
  assert.deepEqual(box, {
    type: 'box_and_whisker', title: null, x_label: null, y_label: null, x_unit: null, y_unit: null,
    elements: [
      { label: 'A', min: 1, first_quartile: 2.25, median: 3.5, third_quartile: 4.75, max: 5, outliers: [20] },
      { label: 'B', min: 2, first_quartile: 3, median: 4, third_quartile: 5, max: 6, outliers: [] },
    ],
  })
  const sup = await chartOf('fig, (a, b) = plt.subplots(1, 2)\nfig.suptitle("Both")\n' +
    'a.plot([0, 1], [0, 1], label="up")\na.set_title("left")\nb.bar(["p", "q"], [1, 2])\nb.set_title("right")')
  assert.equal(sup.type, 'superchart')
  assert.equal(sup.title, 'Both')
  assert.deepEqual(sup.elements.map((c) => [c.type, c.title]), [['line', 'left'], ['bar', 'right']])
  assert.deepEqual(sup.elements[0].elements, [{ label: 'up', points: [[0, 0], [1, 1]] }])
  assert.deepEqual(sup.elements[1].elements.map((e) => [e.label, e.value]), [['p', 1], ['q', 2]])
})

test('a DataFrame gives html and data', T, async () => {
  const e = await sbx.runCode('import pandas as pd\npd.DataFrame({"a": [1, 2], "b": ["x", "y"]})')
  assert.equal(e.error, undefined)
  const r = e.results[0]
  assert.match(r.html, /<table/)
  assert.match(r.text, /a\s+b/)
  assert.deepEqual(r.data, { a: [1, 2], b: ['x', 'y'] })
})

test('global env vars from create, per-call env vars that do not stick', T, async () => {
  const g = await sbx.runCode('import os\nos.environ.get("GLOBAL_VAR")')
  assert.equal(g.text, 'from-create')
  const p = await sbx.runCode('os.environ.get("CALL_VAR")', { envs: { CALL_VAR: 'only now', GLOBAL_VAR: 'shadowed' } })
  assert.equal(p.text, 'only now')
  const after1 = await sbx.runCode('(os.environ.get("CALL_VAR"), os.environ.get("GLOBAL_VAR"))')
  assert.equal(after1.text, "(None, 'from-create')")
  const js = await sbx.runCode('process.env.GLOBAL_VAR + "/" + process.env.JS_CALL', {
    language: 'javascript', envs: { JS_CALL: 'js-call' },
  })
  assert.equal(js.text, 'from-create/js-call')
  const sh = await sbx.runCode('echo "$GLOBAL_VAR $SH_CALL"', { language: 'bash', envs: { SH_CALL: 'sh-call' } })
  assert.deepEqual(sh.logs.stdout.join(''), 'from-create sh-call\n')
})

test('javascript and bash contexts keep their own state', T, async () => {
  const a = await sbx.runCode('let counter = 40; counter + 1', { language: 'javascript' })
  assert.equal(a.text, '41')
  const b = await sbx.runCode('counter += 2; console.log("js out"); counter', { language: 'js' })
  assert.equal(b.text, '42')
  assert.deepEqual(b.logs.stdout, ['js out\n'])
  const je = await sbx.runCode('undefinedName + 1', { language: 'javascript' })
  assert.equal(je.error.name, 'ReferenceError')
  const c = await sbx.runCode('MYVAR=abc; cd /tmp', { language: 'bash' })
  assert.equal(c.error, undefined)
  const d = await sbx.runCode('echo "$MYVAR in $(pwd)"; echo oops >&2', { language: 'bash' })
  assert.deepEqual(d.logs.stdout.join(''), 'abc in /tmp\n')
  assert.deepEqual(d.logs.stderr.join(''), 'oops\n')
})

test('contexts: create with cwd, list, restart loses state, remove', T, async () => {
  await sbx.files.makeDir('/home/user/proj')
  await sbx.files.write('/home/user/proj/data.txt', 'in project\n')
  const ctx = await sbx.createCodeContext({ cwd: '/home/user/proj' })
  assert.equal(ctx.cwd, '/home/user/proj')
  assert.equal(ctx.language, 'python')
  const r = await sbx.runCode('import os\nprint(os.getcwd())\nopen("data.txt").read()', { context: ctx })
  assert.deepEqual(r.logs.stdout, ['/home/user/proj\n'])
  assert.equal(r.text, 'in project\\n')  // the repr of the string, less its quotes
  const listed = await sbx.listCodeContexts()
  assert.ok(listed.some((c) => c.id === ctx.id && c.cwd === '/home/user/proj'), JSON.stringify(listed))
  assert.ok(listed.some((c) => c.language === 'python'))
  assert.ok(listed.some((c) => c.language === 'javascript'))
  await sbx.runCode('y = 5', { context: ctx })
  await sbx.restartCodeContext(ctx)
  const lost = await sbx.runCode('y', { context: ctx })
  assert.equal(lost.error.name, 'NameError')
  assert.match(lost.error.value, /name 'y' is not defined/)
  const cwdKept = await sbx.runCode('import os\nos.getcwd()', { context: ctx })
  assert.equal(cwdKept.text, '/home/user/proj')
  await sbx.removeCodeContext(ctx)
  const after1 = await sbx.listCodeContexts()
  assert.ok(!after1.some((c) => c.id === ctx.id))
  await assert.rejects(sbx.runCode('1', { context: ctx }), /not found/i)
  const js = await sbx.createCodeContext({ language: 'javascript', cwd: '/tmp' })
  const where = await sbx.runCode('process.cwd()', { context: js })
  assert.equal(where.text, '/tmp')
  await sbx.removeCodeContext(js.id)
})

test('restarting a context cuts its running cell short; the context then works, state gone', T, async () => {
  const ctx = await sbx.createCodeContext()
  await sbx.runCode('kept = 1', { context: ctx })
  let started
  const running = new Promise((resolve) => { started = resolve })
  const cell = sbx.runCode('import time\nprint("sleeping", flush=True)\ntime.sleep(30)', {
    context: ctx, onStdout: () => started(),
  })
  await running
  const t = Date.now()
  // The cell ends when the restart begins, not when the new kernel is up (that alone can take
  // longer than the sleep under TCG).
  const ended = cell.then((r) => ({ r, at: Date.now() }))
  await sbx.restartCodeContext(ctx)
  const { r, at } = await ended
  assert.ok(at - t < 15_000, `the cell ended ${at - t} ms after the restart began`)
  assert.equal(r.error?.name, 'ContextRestarting')
  const after = await sbx.runCode('kept', { context: ctx })
  assert.equal(after.error?.name, 'NameError')
  const works = await sbx.runCode('2 * 21', { context: ctx })
  assert.equal(works.text, '42')
  await sbx.removeCodeContext(ctx)
})

test('a cell that outlives the client timeout is interrupted; the next one runs', T, async () => {
  const started = Date.now()
  await assert.rejects(sbx.runCode('import time\nfor i in range(600):\n    time.sleep(0.1)', { timeoutMs: 2_000 }))
  assert.ok(Date.now() - started < 10_000)
  // The interrupt reaches the kernel once kiln-interp sees the client gone (its next write).
  const next = await sbx.runCode('print("after interrupt")', { timeoutMs: 20_000 })
  assert.equal(next.error, undefined)
  assert.deepEqual(next.logs.stdout, ['after interrupt\n'])
})

test('output of a long-running cell streams before the cell ends', T, async () => {
  const seen = []
  const e = await sbx.runCode(
    'import time\nfor i in range(3):\n    print(f"tick {i}", flush=True)\n    time.sleep(0.7)', {
      onStdout: (m) => seen.push({ line: m.line, at: Date.now() }),
    })
  const done = Date.now()
  assert.equal(e.error, undefined)
  assert.deepEqual(seen.map((s) => s.line), ['tick 0\n', 'tick 1\n', 'tick 2\n'])
  assert.ok(done - seen[0].at > 1000, `first tick ${done - seen[0].at} ms before the end`)
})

test('bad cells: a crashing kernel, a flood, invalid UTF-8', T, async () => {
  const ctx = await sbx.createCodeContext()
  await sbx.runCode('z = 1', { context: ctx })
  const crash = await sbx.runCode('import os\nos._exit(3)', { context: ctx, ...SLOW_CELL })
  assert.ok(crash.error, 'a crash is reported as an error')
  assert.match(crash.error.value, /kernel/i)
  const again = await sbx.runCode('print("alive")', { context: ctx, ...SLOW_CELL })
  assert.deepEqual(again.logs.stdout, ['alive\n'])
  const flood = await sbx.runCode('for i in range(100000):\n    print(i)\nprint("end")', { context: ctx, ...SLOW_CELL })
  const all = flood.logs.stdout.join('')
  assert.ok(all.endsWith('99999\nend\n'), all.slice(-40))
  // Bytes that are not UTF-8, from a shell command (IPython's `!`).
  const bad = await sbx.runCode('!printf "ok \\377\\376 done\\n"\nprint("after")', { context: ctx, ...SLOW_CELL })
  assert.equal(bad.error, undefined)
  assert.match(bad.logs.stdout.join(''), /^ok \ufffd\ufffd done\r?\nafter\n$/)
  await sbx.removeCodeContext(ctx)
})

// The README's quickstart: an agent installs a package (a local one: this machine has no
// package index) and analyses a data set it uploaded, with a chart.
test('quickstart: install a package, analyse a data set, plot it', T, async () => {
  await sbx.files.write('/tmp/pkgsrc/pyproject.toml',
    '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n' +
    '[project]\nname = "salestools"\nversion = "1.0.0"\n')
  await sbx.files.write('/tmp/pkgsrc/salestools/__init__.py',
    'def growth(first, last):\n    return round(100.0 * (last - first) / first, 1)\n')
  const install = await sbx.runCode('!pip install --no-build-isolation --no-index /tmp/pkgsrc', SLOW_CELL)
  assert.equal(install.error, undefined)
  assert.match(install.logs.stdout.join(''), /Successfully installed salestools-1\.0\.0/)
  await sbx.files.write('/home/user/sales.csv',
    'month,region,revenue\n2026-01,north,100\n2026-01,south,80\n2026-02,north,120\n2026-02,south,90\n' +
    '2026-03,north,150\n2026-03,south,85\n')
  const analysis = await sbx.runCode([
    'import pandas as pd, salestools',
    'df = pd.read_csv("sales.csv")',
    'by_month = df.groupby("month")["revenue"].sum()',
    'print("growth", salestools.growth(by_month.iloc[0], by_month.iloc[-1]))',
    'by_month.plot(kind="bar", title="Revenue by month")',
    'df.pivot(index="month", columns="region", values="revenue")',
  ].join('\n'), SLOW_CELL)
  assert.equal(analysis.error, undefined, analysis.error && plain(analysis.error.traceback))
  assert.deepEqual(analysis.logs.stdout, ['growth 30.6\n'])  // (235 - 180) / 180
  const table = analysis.results.find((r) => r.isMainResult)
  assert.deepEqual(table.data, { north: [100, 120, 150], south: [80, 90, 85] })
  const chart = analysis.results.find((r) => r.chart)
  assert.ok(chart && chart.png, 'the bar chart is displayed')
  assert.equal(chart.chart.type, 'bar')
  assert.equal(chart.chart.title, 'Revenue by month')
  assert.deepEqual(chart.chart.elements.map((e) => [e.label, e.value]),
    [['2026-01', 180], ['2026-02', 210], ['2026-03', 235]])
})

test('/execute without the access token is refused', T, async () => {
  const res = await fetch(`${opts.sandboxUrl}/execute`, {
    method: 'POST',
    headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '49999', 'Content-Type': 'application/json' },
    body: JSON.stringify({ code: 'print(1)' }),
  })
  assert.equal(res.status, 401)
  await res.text()
})
