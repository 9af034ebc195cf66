"""Tests of kiln_ipykernel.py (the lower-latency ipykernel launcher), through
jupyter_client like kiln-interp would drive it.

* SameAsStockTest runs one script of cells in the stock kernel
  (`python3 -m ipykernel_launcher`) and in ours and compares every IOPub
  message and reply (normalized: ids, dates, PIDs).
* FastKernelTest checks what a comparison cannot: output streaming while a
  cell runs, interrupts (also while output is being flushed), input(),
  matplotlib figures with kiln_display, history written to the database,
  output of threads and forked children, exit when the parent dies.
"""

import os
import queue
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

from kernel_util import PYTHON, SRC, CellResult, start_kernel, stop_kernel

FAST_ARGV = [PYTHON, os.path.join(SRC, "kiln_ipykernel.py"), "-f", "{connection_file}"]
STOCK_ARGV = [PYTHON, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
SETUP = "import kiln_display\nkiln_display.install()\n"

_ipython_dir = None


def setUpModule():
    # Own IPython profile dir: history databases of the test kernels do not
    # touch the user's, and can be inspected.
    global _ipython_dir
    _ipython_dir = tempfile.mkdtemp(prefix="kiln-fast-kernel-test-")


def tearDownModule():
    shutil.rmtree(_ipython_dir, ignore_errors=True)


def start(argv, name):
    env = {"IPYTHONDIR": os.path.join(_ipython_dir, name),
           "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    km, kc = start_kernel(argv, env=env)
    return km, kc


def collect(kc, msg_id, timeout=30, linger=0.0):
    """Every IOPub message of request msg_id until its idle status (plus
    `linger` seconds more), and its reply."""
    msgs = []
    deadline = time.monotonic() + timeout
    idle_at = None
    while True:
        now = time.monotonic()
        if idle_at is not None and now >= idle_at + linger:
            break
        if now >= deadline:
            raise TimeoutError("no idle for %s; got %r" % (msg_id, msgs))
        wait = deadline - now if idle_at is None else idle_at + linger - now
        try:
            msg = kc.get_iopub_msg(timeout=max(0.01, wait))
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        msg["arrived"] = time.monotonic()
        msgs.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            idle_at = time.monotonic()
    reply = kc.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=timeout)
    return msgs, reply


def execute(kc, code, timeout=30, **kw):
    """Runs a cell the way kiln-interp does (allow_stdin and stop_on_error
    false); returns a kernel_util.CellResult."""
    kw.setdefault("allow_stdin", False)
    kw.setdefault("stop_on_error", False)
    msgs, reply = collect(kc, kc.execute(code, **kw), timeout=timeout)
    res = CellResult()
    for m in msgs:
        t, c = m["msg_type"], m["content"]
        if t == "stream":
            res.stream_times.append((m["arrived"], c["name"], c["text"]))
            if c["name"] == "stdout":
                res.stdout += c["text"]
            else:
                res.stderr += c["text"]
        elif t == "execute_result":
            res.results.append(c["data"])
        elif t == "display_data":
            res.displays.append(c["data"])
        elif t == "error":
            res.errors.append(c)
        elif t == "execute_input":
            res.execution_count = c.get("execution_count")
    res.reply = reply
    return res


_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
_PID_RE = re.compile(r"ipykernel_\d+")
_ADDR_RE = re.compile(r" at 0x[0-9a-f]+")


_DURATION_RE = re.compile(r"\d+(\.\d+)? ?(ns|µs|us|ms|s)\b")


def _norm_text(text):
    text = _DURATION_RE.sub("<duration>", text)  # %time output
    return _ADDR_RE.sub(" at 0x?", _PID_RE.sub("ipykernel_PID", text))


def _norm(value):
    if isinstance(value, str):
        return _norm_text(value)
    if isinstance(value, list):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()
                if k not in ("engine_info", "image/png")}
    return value


def normalize(msgs, reply):
    """(msg_type, content) of each message, consecutive stream messages of one
    stream merged (how output is split in time is tested separately)."""
    out = []
    for m in msgs:
        t, c = m["msg_type"], _norm(m["content"])
        if t == "stream" and out and out[-1][0] == "stream" and out[-1][1]["name"] == c["name"]:
            out[-1][1]["text"] += c["text"]
            continue
        out.append((t, c))
    rc = _norm(reply["content"])
    return out, (reply["msg_type"], rc)


# The script both kernels run (in this order, one kernel each).
SCRIPT = [
    "print(1)",
    "1 + 1",
    "x = 5\nx * 2",
    "print('out'); import sys; print('err', file=sys.stderr); 'value'",
    "raise ValueError('boom')",
    "def f(n):\n    return 1 / n\nf(0)",
    "In[1], Out[2], _, __, _i, _ii[:5]",
    "%env KILN_FAST_TEST=1",
    "import os; os.environ['KILN_FAST_TEST']",
    "!echo from-shell",
    "files = !echo captured\nfiles",
    "%history -n -l 3",
    "from IPython.display import display, HTML, Markdown\ndisplay(HTML('<b>x</b>')); display(Markdown('*y*')); 3",
    "import asyncio\nawait asyncio.sleep(0.01)\nprint('async'); 7",
    "input('name? ')",
    "import os\nos.system('echo via-fd'); import time; time.sleep(0.2)",
    "import threading\nt = threading.Thread(target=lambda: print('from-thread')); t.start(); t.join()",
    "import sys\n[p for p in sys.path if 'kiln' not in p]",
    "get_ipython().execution_count, len(In), sorted(k for k in globals() if not k.startswith('_'))[:12]",
    "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [4, 5, 6]); plt.title('t')",
    "from pandas import DataFrame\nDataFrame({'a': [1, 2], 'b': ['x', 'y']})",
    "%%capture cap\nprint('hidden')",
    "cap.stdout",
    "1;",
    "print('no newline', end='')",
    "del x\nx",
    "for i in range(3): print(i)",
    "%time y = sum(range(10))",
    "y",
    "import warnings; warnings.warn('careful')",
]


class SameAsStockTest(unittest.TestCase):
    """Message-by-message comparison with the stock launcher."""

    maxDiff = None

    def run_script(self, argv, name):
        km, kc = start(argv, name)
        try:
            msgs, _ = collect(kc, kc.execute(SETUP, silent=True))
            out = []
            for code in SCRIPT:
                msg_id = kc.execute(code, stop_on_error=False, allow_stdin=False)
                out.append(normalize(*collect(kc, msg_id)))
            # silent, user_expressions, store_history=False
            out.append(normalize(*collect(kc, kc.execute("print('quiet')", silent=True, allow_stdin=False))))
            out.append(normalize(*collect(kc, kc.execute(
                "a = 3", user_expressions={"e": "a + 1", "bad": "1/0"}, allow_stdin=False))))
            out.append(normalize(*collect(kc, kc.execute("print('nohist')", store_history=False, allow_stdin=False))))
            out.append(normalize(*collect(kc, kc.execute("len(In)", allow_stdin=False))))
            # stop_on_error (the default): a request queued behind an error is aborted.
            first = kc.execute("raise RuntimeError('stop')", allow_stdin=False)
            second = kc.execute("print('never')", allow_stdin=False)
            out.append(normalize(*collect(kc, first)))
            out.append(normalize(*collect(kc, second)))
            # The "stop aborting" window of ipykernel has passed after 0.1 s.
            time.sleep(0.2)
            out.append(normalize(*collect(kc, kc.execute("print('runs again')", allow_stdin=False))))
            return out
        finally:
            stop_kernel(km, kc)

    def test_same_messages(self):
        # sys.path would only differ in the working directory ('' and cwd).
        stock = self.run_script(STOCK_ARGV, "stock-compare")
        fast = self.run_script(FAST_ARGV, "fast-compare")
        self.assertEqual(len(stock), len(fast))
        labels = SCRIPT + ["silent", "user_expressions", "store_history=False", "len(In)",
                           "error before queued", "queued after error", "after abort"]
        for label, s, f in zip(labels, stock, fast):
            with self.subTest(cell=label):
                self.assertEqual(s, f)
        # Spot checks that the comparison compared something meaningful.
        self.assertEqual(fast[0][0], [
            ("status", {"execution_state": "busy"}),
            ("execute_input", {"code": "print(1)", "execution_count": 1}),
            ("stream", {"name": "stdout", "text": "1\n"}),
            ("status", {"execution_state": "idle"}),
        ])
        self.assertEqual(fast[4][1][1]["ename"], "ValueError")
        self.assertEqual(fast[-2][1][1]["status"], "aborted")


class FastKernelTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.km, cls.kc = start(FAST_ARGV, "fast")
        res = execute(cls.kc, SETUP)
        assert res.reply["content"]["status"] == "ok", res

    @classmethod
    def tearDownClass(cls):
        stop_kernel(cls.km, cls.kc)

    def run_cell(self, code, **kw):
        return execute(self.kc, code, **kw)

    def test_print_sequence(self):
        msg_id = self.kc.execute("print(1)", allow_stdin=False)
        msgs, reply = collect(self.kc, msg_id)
        self.assertEqual([m["msg_type"] for m in msgs],
                         ["status", "execute_input", "stream", "status"])
        self.assertEqual(msgs[2]["content"], {"name": "stdout", "text": "1\n"})
        self.assertEqual(reply["content"]["status"], "ok")
        self.assertEqual(reply["content"]["execution_count"],
                         msgs[1]["content"]["execution_count"])

    def test_expression_result(self):
        res = self.run_cell("21 * 2")
        self.assertEqual(res.results, [{"text/plain": "42"}])
        self.assertEqual(res.reply["content"]["status"], "ok")

    def test_error(self):
        res = self.run_cell("def g():\n    raise KeyError('k')\ng()")
        self.assertEqual(res.reply["content"]["status"], "error")
        self.assertEqual(len(res.errors), 1)
        err = res.errors[0]
        self.assertEqual((err["ename"], err["evalue"]), ("KeyError", "'k'"))
        plain = [_ANSI_RE.sub("", line) for line in err["traceback"]]
        self.assertTrue(any("----> 3 g()" in line for line in plain), plain)
        self.assertTrue(any("----> 2     raise KeyError('k')" in line for line in plain), plain)

    def test_matplotlib_figure(self):
        res = self.run_cell("import matplotlib.pyplot as plt\n"
                            "plt.bar(['a', 'b'], [1, 2]); plt.title('bars')")
        self.assertEqual(res.reply["content"]["status"], "ok")
        self.assertEqual(len(res.displays), 1, res)
        data = res.displays[0]
        self.assertTrue(data["image/png"])
        self.assertEqual(data["e2b/chart"]["type"], "bar")
        self.assertEqual(data["e2b/chart"]["title"], "bars")

    def test_streaming_during_long_cell(self):
        start = time.monotonic()
        res = self.run_cell("import time\nfor i in range(5):\n    print(i)\n    time.sleep(0.2)")
        end = time.monotonic()
        self.assertEqual(res.stdout, "0\n1\n2\n3\n4\n")
        first = res.stream_times[0][0] - start
        # The first line is sent 0.2 s after it was printed, long before the
        # cell's end (1 s).
        self.assertLess(first, 0.6, res.stream_times)
        self.assertGreaterEqual(len(res.stream_times), 3, res.stream_times)
        self.assertGreater(end - res.stream_times[0][0], 0.3)

    def test_short_cell_output_is_one_message(self):
        res = self.run_cell("for i in range(100): print(i)")
        self.assertEqual(len(res.stream_times), 1)
        self.assertEqual(res.stdout, "".join("%d\n" % i for i in range(100)))

    def test_interrupt(self):
        msg_id = self.kc.execute("import time\ntime.sleep(30)", stop_on_error=False, allow_stdin=False)
        time.sleep(0.5)
        self.km.interrupt_kernel()
        msgs, reply = collect(self.kc, msg_id, timeout=10)
        self.assertEqual(reply["content"]["status"], "error")
        self.assertEqual(reply["content"]["ename"], "KeyboardInterrupt")
        self.assertEqual(self.run_cell("print('alive')").stdout, "alive\n")

    def test_interrupt_while_flushing(self):
        # SIGINTs land while the main thread sends output; every message must
        # stay intact (a broken multipart would be dropped by jupyter_client
        # as an invalid signature, or glue two messages together).
        for _ in range(3):
            msg_id = self.kc.execute(
                "import sys\nwhile True:\n    print('x' * 50, flush=True)\n"
                "    sys.stderr.write('e\\n'); sys.stderr.flush()", stop_on_error=False,
                allow_stdin=False)
            time.sleep(0.3)
            self.km.interrupt_kernel()
            msgs, reply = collect(self.kc, msg_id, timeout=10)
            self.assertEqual(reply["content"]["ename"], "KeyboardInterrupt")
            for m in msgs:
                if m["msg_type"] == "stream":
                    text = m["content"]["text"]
                    self.assertTrue(set(text) <= set("xe\n"), text[:100])
            res = self.run_cell("print('after')")
            self.assertEqual(res.stdout, "after\n")

    def test_input_not_allowed(self):
        res = self.run_cell("input('who? ')")
        self.assertEqual(res.reply["content"]["status"], "error")
        self.assertEqual(res.errors[0]["ename"], "StdinNotImplementedError")

    def test_history_and_magics(self):
        self.run_cell("hist_a = 40")
        res = self.run_cell("hist_a + 2")
        self.assertEqual(res.results, [{"text/plain": "42"}])
        n = res.execution_count
        res = self.run_cell("Out[%d], In[%d], _" % (n, n))
        self.assertEqual(res.results, [{"text/plain": "(42, 'hist_a + 2', 42)"}])
        res = self.run_cell("%who_ls int")
        self.assertIn("'hist_a'", res.results[0]["text/plain"])
        res = self.run_cell("!echo shell-ok")
        self.assertEqual(res.stdout.strip(), "shell-ok")

    def test_history_reaches_database(self):
        marker = "history_marker_%d = 1" % os.getpid()
        self.run_cell(marker)
        db = os.path.join(_ipython_dir, "fast", "profile_default", "history.sqlite")
        deadline = time.monotonic() + 5
        while True:
            con = sqlite3.connect(db)
            try:
                rows = con.execute("SELECT source_raw FROM history WHERE source_raw = ?",
                                   (marker,)).fetchall()
            finally:
                con.close()
            if rows or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(rows, [(marker,)])

    def test_forked_child_output(self):
        res = self.run_cell(
            "import multiprocessing as mp\n"
            "p = mp.get_context('fork').Process(target=print, args=('from-child',))\n"
            "p.start(); p.join(); import time; time.sleep(0.3)")
        self.assertIn("from-child\n", res.stdout)

    def test_thread_output_after_cell(self):
        # Output of a thread that outlives its cell still arrives (within the
        # 0.2 s flush interval).
        msg_id = self.kc.execute(
            "import threading, time\n"
            "threading.Thread(target=lambda: (time.sleep(0.3), print('late'))).start()",
            allow_stdin=False)
        msgs, _ = collect(self.kc, msg_id, linger=1.5)
        texts = "".join(m["content"].get("text", "") for m in msgs if m["msg_type"] == "stream")
        self.assertEqual(texts, "late\n")


class LifecycleTest(unittest.TestCase):
    def test_history_written_at_shutdown(self):
        km, kc = start(FAST_ARGV, "fast-shutdown")
        marker = "shutdown_marker = 1"
        try:
            execute(kc, marker)
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=False)
        db = os.path.join(_ipython_dir, "fast-shutdown", "profile_default", "history.sqlite")
        con = sqlite3.connect(db)
        try:
            rows = con.execute("SELECT count(*) FROM history WHERE source_raw = ?",
                               (marker,)).fetchone()
        finally:
            con.close()
        self.assertEqual(rows, (1,))

    def test_exits_when_parent_dies(self):
        # A middle process starts the kernel with JPY_PARENT_PID set to its own
        # pid and exits; the kernel (reparented) must exit by itself.
        conn = tempfile.mktemp(suffix=".json", dir=_ipython_dir)
        env = dict(os.environ, PYTHONPATH=SRC, IPYTHONDIR=os.path.join(_ipython_dir, "orphan"))
        code = ("import os, subprocess, sys\n"
                "env = dict(os.environ, JPY_PARENT_PID=str(os.getpid()))\n"
                "p = subprocess.Popen(%r, env=env, stdout=subprocess.DEVNULL,"
                " stderr=subprocess.DEVNULL, start_new_session=True)\n"
                "print(p.pid, flush=True)\n"
                "import time\n"
                "while not os.path.exists(%r): time.sleep(0.05)\n"
                "time.sleep(0.5)\n" % (FAST_ARGV[:-1] + [conn], conn))
        middle = subprocess.run([PYTHON, "-c", code], env=env, capture_output=True, text=True,
                                timeout=60)
        kernel_pid = int(middle.stdout.split()[0])
        deadline = time.monotonic() + 10
        alive = True
        while time.monotonic() < deadline:
            try:
                with open("/proc/%d/stat" % kernel_pid) as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                state = "gone"
            if state in ("Z", "X", "gone"):  # exited (maybe not reaped yet)
                alive = False
                break
            time.sleep(0.1)
        if alive:
            os.kill(kernel_pid, signal.SIGKILL)
        self.assertFalse(alive, "kernel %d still runs after its parent exited" % kernel_pid)


if __name__ == "__main__":
    unittest.main()
