"""Tests of kiln_ipykernel.py (the lower-latency ipykernel launcher), through
jupyter_client like kiln-interp would drive it.

* SameAsStockTest runs one script of cells in the stock kernel
  (`python3 -m ipykernel_launcher`) and in ours and compares every IOPub
  message and reply (normalized: ids, dates, PIDs).
* FastKernelTest checks what a comparison cannot: output streaming while a
  cell runs, interrupts (also while output is being flushed), input(),
  matplotlib figures with kiln_display, history written to the database,
  output of threads, subprocesses and forked children (also forks while
  another thread holds the stream locks), output order within a cell, large
  output, magics, restart/shutdown, exit when the parent dies.
* DeferSigintTest checks the SIGINT deferral around main-thread sends.
"""

import ctypes
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

sys.path.insert(0, SRC)
import kiln_ipykernel  # noqa: E402  (unit tests of its pieces)

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


_SYS_TGKILL = {"x86_64": 234, "aarch64": 131}.get(os.uname().machine)
_libc = ctypes.CDLL(None, use_errno=True)


def interrupt_main_thread(km):
    """SIGINT to the kernel's main thread, the way kiln-interp interrupts
    (tgkill); falls back to jupyter_client's process-directed signal."""
    pid = km.provisioner.process.pid
    if _SYS_TGKILL is None:
        km.interrupt_kernel()
        return
    if _libc.syscall(_SYS_TGKILL, pid, pid, int(signal.SIGINT)) != 0:
        raise OSError(ctypes.get_errno(), "tgkill")


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
    "%%time\nprint('timed')",
    "%%bash\necho bash-out\necho bash-out2",
    "print('before'); raise ValueError('after print')",
    "print('a'); display(1); print('b'); 2",
    "from IPython.display import JSON, SVG, Latex\n"
    "display(JSON({'k': [1, 2]})); display(Latex('$x$'));"
    " display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\"/>'))",
    "display({'text/plain': 'raw', 'application/json': {'r': 1}}, raw=True)",
    "from IPython.display import update_display\n"
    "display('first', display_id='kiln-d1'); update_display('second', display_id='kiln-d1')",
    "print('gone'); from IPython.display import clear_output; clear_output(); print('kept')",
    "import sys; sys.stdout.write('partial'); sys.stdout.flush(); print(' line'); 9",
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
            # The failing cell sleeps first so that the second request is
            # queued when the error comes (ipykernel aborts only what is
            # queued then; back-to-back sends could race under load).
            first = kc.execute("import time; time.sleep(0.3); raise RuntimeError('stop')",
                               allow_stdin=False)
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

    def test_subprocess_output_belongs_to_its_cell(self):
        # A child that has exited wrote into the fd-1/fd-2 pipe before the
        # cell ended; that output is part of the cell, every time (without
        # draining the pipe at the final flush, 10 of 50 such cells lost it
        # to the next cell under load).
        for i in range(20):
            res = self.run_cell("import subprocess\n"
                                "subprocess.run('echo out-%d; echo err-%d >&2', shell=True)" % (i, i))
            self.assertEqual((res.stdout, res.stderr), ("out-%d\n" % i, "err-%d\n" % i))
        # Both outputs are the cell's; their order is not: fd output reaches the stream through
        # the pipe watcher, as in the stock kernel, so print() may overtake it.
        res = self.run_cell("import os\nos.system('echo sys-out'); print('py-out')")
        self.assertEqual(sorted(res.stdout.splitlines()), ["py-out", "sys-out"])

    def test_fd_output_split_utf8_and_binary(self):
        # A character split between two reads of the pipe, and bytes that are
        # not UTF-8 (stock ipykernel's watcher thread dies on both, losing all
        # later fd output).
        res = self.run_cell("import os\nos.write(1, ('a' * 999 + '\u00e9\\n').encode())")
        self.assertEqual(res.stdout, "a" * 999 + "\u00e9\n")
        res = self.run_cell("import os\nos.write(1, b'bin \\xff\\xfe end\\n')")
        self.assertEqual(res.stdout, "bin \ufffd\ufffd end\n")
        res = self.run_cell("import os\nos.system('echo still-there')")
        self.assertEqual(res.stdout, "still-there\n")

    def test_large_output(self):
        res = self.run_cell("print('x' * 10_000_000)", timeout=60)
        self.assertEqual(len(res.stdout), 10_000_001)
        self.assertEqual(set(res.stdout), {"x", "\n"})
        # 3 MB through the fd pipe (more than it holds: the watcher must keep
        # reading while the child writes).
        res = self.run_cell("import subprocess\nsubprocess.run('yes 0123456789 | head -c 3000000',"
                            " shell=True)", timeout=60)
        self.assertEqual(len(res.stdout), 3000000)
        self.assertEqual(res.stdout[:22], "0123456789\n" * 2)

    def test_threads_output_complete_and_ordered(self):
        res = self.run_cell(
            "import threading, sys\n"
            "def work(t):\n"
            "    for i in range(300):\n"
            "        print('t%d-%d' % (t, i), flush=(i % 7 == 0))\n"
            "ts = [threading.Thread(target=work, args=(t,)) for t in range(6)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]")
        lines = res.stdout.splitlines()
        self.assertEqual(len(lines), 6 * 300, res.stdout[-200:])
        for t in range(6):
            mine = [line for line in lines if line.startswith("t%d-" % t)]
            self.assertEqual(mine, ["t%d-%d" % (t, i) for i in range(300)])

    def test_output_order(self):
        msg_id = self.kc.execute(
            "print('a'); import sys; print('e', file=sys.stderr)\n"
            "from IPython.display import display; display('d')\n"
            "print('b')\n"
            "raise ValueError('v')", stop_on_error=False, allow_stdin=False)
        msgs, reply = collect(self.kc, msg_id)
        seq = [(m["msg_type"], m["content"].get("text") or m["content"].get("ename")
                or m["content"].get("data", {}).get("text/plain")) for m in msgs
               if m["msg_type"] not in ("status", "execute_input")]
        self.assertEqual(seq, [("stream", "a\n"), ("stream", "e\n"), ("display_data", "'d'"),
                               ("stream", "b\n"), ("error", "ValueError")])
        self.assertEqual(reply["content"]["status"], "error")
        msg_id = self.kc.execute("print('p'); 5", allow_stdin=False)
        msgs, _ = collect(self.kc, msg_id)
        self.assertEqual([m["msg_type"] for m in msgs],
                         ["status", "execute_input", "stream", "execute_result", "status"])

    def test_bash_and_time_magics(self):
        res = self.run_cell("%%bash\necho out; echo err >&2; echo out2")
        self.assertEqual((res.stdout, res.stderr), ("out\nout2\n", "err\n"))
        res = self.run_cell("%%time\nprint('t')\n6 * 7")
        self.assertTrue(res.stdout.startswith("t\n"), res.stdout)
        self.assertIn("Wall time", res.stdout)
        self.assertEqual(res.results, [{"text/plain": "42"}])

    def test_input_allowed(self):
        msg_id = self.kc.execute("name = input('who? ')\nprint('hello', name)", allow_stdin=True)
        req = self.kc.get_stdin_msg(timeout=10)
        self.assertEqual(req["msg_type"], "input_request")
        self.assertEqual(req["content"]["prompt"], "who? ")
        self.kc.input("kiln")
        msgs, reply = collect(self.kc, msg_id)
        self.assertEqual(reply["content"]["status"], "ok")
        text = "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")
        self.assertEqual(text, "hello kiln\n")

    def test_interrupt_main_thread_sleep(self):
        msg_id = self.kc.execute("import time\ntime.sleep(30)", stop_on_error=False, allow_stdin=False)
        time.sleep(0.3)
        start = time.monotonic()
        interrupt_main_thread(self.km)
        msgs, reply = collect(self.kc, msg_id, timeout=10)
        self.assertLess(time.monotonic() - start, 5)
        self.assertEqual(reply["content"]["ename"], "KeyboardInterrupt")
        # It ends in the cell, as with the stock kernel's C handler: kiln's
        # handler frame is not shown.
        errors = [m["content"] for m in msgs if m["msg_type"] == "error"]
        self.assertEqual(len(errors), 1)
        text = _ANSI_RE.sub("", "\n".join(errors[0]["traceback"]))
        self.assertIn("time.sleep(30)", text)
        self.assertNotIn("kiln_ipykernel", text)

    def test_interrupt_tripped_before_a_blocking_call_is_sent_again(self):
        # The race: CPython's C handler has tripped SIGINT (and written its
        # number to the wakeup fd) but the Python handler has not run yet when
        # time.sleep blocks. The cell writes that byte itself, which is all
        # the C handler does, and blocks: only a repeated SIGINT ends it.
        code = ("import os, signal, time\n"
                "fd = signal.set_wakeup_fd(-1)\n"
                "signal.set_wakeup_fd(fd)\n"
                "assert fd != -1, 'the kernel has no wakeup fd'\n"
                "os.write(fd, bytes([signal.SIGINT]))\n"
                "time.sleep(30)")
        start = time.monotonic()
        msg_id = self.kc.execute(code, stop_on_error=False, allow_stdin=False)
        msgs, reply = collect(self.kc, msg_id, timeout=10)
        self.assertLess(time.monotonic() - start, 5)
        self.assertEqual(reply["content"]["ename"], "KeyboardInterrupt")
        self.assertEqual(self.run_cell("print('after')").stdout, "after\n")

    def test_handled_interrupt_is_not_repeated(self):
        # A repeat of an interrupt the cell already took would break its
        # except clause.
        code = ("import time\n"
                "try:\n"
                "    print('started', flush=True)\n"
                "    time.sleep(30)\n"
                "except KeyboardInterrupt:\n"
                "    end = time.monotonic() + 2\n"
                "    while time.monotonic() < end:\n"
                "        time.sleep(0.05)\n"
                "    print('cleaned up')")
        msg_id = self.kc.execute(code, stop_on_error=False, allow_stdin=False)
        deadline = time.monotonic() + 10
        while True:  # the cell runs (its SIGINT handler is in place)
            msg = self.kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
            if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream"
                    and "started" in msg["content"]["text"]):
                break
        interrupt_main_thread(self.km)
        msgs, reply = collect(self.kc, msg_id, timeout=10)
        self.assertEqual(reply["content"]["status"], "ok", reply["content"])
        text = "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")
        self.assertEqual(text, "cleaned up\n")

    def test_traceback_that_ipython_cannot_format_is_still_an_error(self):
        # As when stack_data rejects a frame (see _patch_traceback_formatting).
        self.run_cell("get_ipython().InteractiveTB.format_exception_as_a_whole = "
                      "lambda *a, **k: 1 / 0")
        try:
            res = self.run_cell("def inner():\n    raise ValueError('boom')\ninner()")
        finally:
            self.run_cell("del get_ipython().InteractiveTB.format_exception_as_a_whole")
        self.assertEqual(res.reply["content"]["status"], "error")
        self.assertEqual(len(res.errors), 1, res.stdout + res.stderr)
        error = res.errors[0]
        self.assertEqual((error["ename"], error["evalue"]), ("ValueError", "boom"))
        text = "\n".join(error["traceback"])
        self.assertIn("in inner", text)
        self.assertIn("ValueError: boom", text)
        self.assertNotIn("run_code", text)  # the shell's frame is skipped, as IPython does
        self.assertNotIn("Unexpected exception formatting", res.stdout)
        self.assertEqual(res.reply["content"]["traceback"], error["traceback"])
        # and the formatter is back
        res = self.run_cell("raise KeyError('k')")
        self.assertIn("KeyError", "\n".join(res.errors[0]["traceback"]))

    def test_interrupt_print_flood(self):
        # print() without flush: the Flusher thread sends while the main thread
        # writes; the SIGINT lands in the writes or in a main-thread send.
        for _ in range(3):
            msg_id = self.kc.execute("i = 0\nwhile True:\n    print(i); i += 1",
                                     stop_on_error=False, allow_stdin=False)
            time.sleep(0.5)
            interrupt_main_thread(self.km)
            msgs, reply = collect(self.kc, msg_id, timeout=10)
            self.assertEqual(reply["content"]["status"], "error")
            self.assertEqual(reply["content"]["ename"], "KeyboardInterrupt")
            text = "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream"
                           and m["content"]["name"] == "stdout")
            lines = text.split("\n")[:-1]  # the last one may be cut
            self.assertGreater(len(lines), 100)
            self.assertEqual(lines, [str(i) for i in range(len(lines))])
            self.assertEqual(self.run_cell("print('after')").stdout, "after\n")

    def test_fork_while_locks_held(self):
        # A child forked while another kernel thread holds the stream locks
        # (say the Flusher in the middle of a send) must not deadlock on them.
        # (os.fork: multiprocessing flushes the streams before it forks, which
        # would wait for the held locks in the parent.)
        res = self.run_cell(
            "import os, threading, sys, kiln_ipykernel as k\n"
            "held, release = threading.Event(), threading.Event()\n"
            "def hold():\n"
            "    with sys.stdout._flush_lock, sys.stdout._pipe_lock, k._flusher._cond:\n"
            "        held.set(); release.wait()\n"
            "t = threading.Thread(target=hold); t.start(); held.wait()\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    try:\n"
            "        print('child-ok'); sys.stdout.flush()\n"
            "    finally:\n"
            "        os._exit(0)\n"
            "import time\n"
            "deadline = time.monotonic() + 10\n"
            "while time.monotonic() < deadline:\n"
            "    done, status = os.waitpid(pid, os.WNOHANG)\n"
            "    if done: break\n"
            "    time.sleep(0.05)\n"
            "else:\n"
            "    os.kill(pid, 9); os.waitpid(pid, 0); status = 'hung'\n"
            "release.set(); t.join()\n"
            "time.sleep(0.3)\n"
            "print('exit', status)", timeout=30)
        self.assertIn("child-ok\n", res.stdout)
        self.assertIn("exit 0\n", res.stdout)

    def test_pool_output(self):
        res = self.run_cell(
            "import multiprocessing as mp\n"
            "with mp.get_context('fork').Pool(2) as p: r = p.map(print, ['w1', 'w2', 'w3'])\n"
            "import time; time.sleep(0.3)")
        # Two workers write at once: their "wN" and "\n" may interleave (as
        # with the stock kernel); every piece must arrive once.
        self.assertEqual(sorted(re.findall(r"w\d", res.stdout)), ["w1", "w2", "w3"])
        self.assertEqual(res.stdout.count("\n"), 3)


class DeferSigintTest(unittest.TestCase):
    """kiln_ipykernel._DeferSigint, in this (main) thread."""

    def setUp(self):
        self.saved = signal.signal(signal.SIGINT, signal.default_int_handler)

    def tearDown(self):
        signal.signal(signal.SIGINT, self.saved)
        kiln_ipykernel._signal = __import__("_signal")

    def test_sigint_deferred_to_exit(self):
        reached = []
        with self.assertRaises(KeyboardInterrupt):
            with kiln_ipykernel._defer_sigint:
                signal.raise_signal(signal.SIGINT)
                reached.append(1)
        self.assertEqual(reached, [1])
        self.assertIs(signal.getsignal(signal.SIGINT), signal.default_int_handler)
        self.assertEqual(kiln_ipykernel._DeferSigint._depth, 0)

    def test_nested(self):
        with self.assertRaises(KeyboardInterrupt):
            with kiln_ipykernel._defer_sigint:
                with kiln_ipykernel._defer_sigint:
                    signal.raise_signal(signal.SIGINT)
                # the inner exit does not deliver it
                self.assertEqual(kiln_ipykernel._DeferSigint._depth, 1)
        self.assertEqual(kiln_ipykernel._DeferSigint._depth, 0)

    def test_interrupt_while_entering_leaves_no_depth(self):
        # signal.signal runs pending handlers before swapping: a
        # KeyboardInterrupt can come out of __enter__. The deferral must keep
        # working afterwards.
        real = kiln_ipykernel._signal

        class Raising:
            getsignal = staticmethod(real.getsignal)

            @staticmethod
            def signal(signum, handler):
                raise KeyboardInterrupt

        kiln_ipykernel._signal = Raising
        with self.assertRaises(KeyboardInterrupt):
            with kiln_ipykernel._defer_sigint:
                self.fail("body must not run")
        kiln_ipykernel._signal = real
        self.assertEqual(kiln_ipykernel._DeferSigint._depth, 0)
        self.test_sigint_deferred_to_exit()

    def test_ignored_sigint_left_alone(self):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with kiln_ipykernel._defer_sigint:
            self.assertEqual(signal.getsignal(signal.SIGINT), signal.SIG_IGN)
            signal.raise_signal(signal.SIGINT)
        self.assertEqual(signal.getsignal(signal.SIGINT), signal.SIG_IGN)


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

    def test_shutdown_and_restart_exit_cleanly(self):
        # The kernel exits by itself on shutdown_request (jupyter_client would
        # kill it after 5 s otherwise: exit code -9) and a restart works.
        km, kc = start(FAST_ARGV, "fast-restart")
        try:
            self.assertEqual(execute(kc, "print('one')").stdout, "one\n")
            first = km.provisioner.process
            start_at = time.monotonic()
            km.restart_kernel(now=False)
            self.assertLess(time.monotonic() - start_at, 4.5)
            self.assertEqual(first.wait(timeout=5), 0)
            kc.wait_for_ready(timeout=60)
            res = execute(kc, "import os; print('two'); os.getpid()")
            self.assertEqual(res.stdout, "two\n")
            self.assertNotEqual(res.results[0]["text/plain"], str(first.pid))
            second = km.provisioner.process
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=False)
        self.assertEqual(second.wait(timeout=5), 0)

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
