"""End-to-end tests of kiln's kernels through jupyter_client: the bash and
JavaScript wrapper kernels, and the IPython kernel with kiln_display."""

import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kernel_util as ku  # noqa: E402


def interrupt_on_marker(km, marker="started"):
    """on_stream callback: interrupts the kernel (SIGINT to its process group,
    as kiln-interp does) once `marker` was printed by the cell."""
    state = {"sent": False, "seen": ""}

    def on_stream(name, text):
        state["seen"] += text
        if not state["sent"] and marker in state["seen"]:
            state["sent"] = True
            km.interrupt_kernel()

    return on_stream


class BashKernelTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="kiln-bash-test-")
        cls.km, cls.kc = ku.start_kernel(
            [ku.PYTHON, os.path.join(ku.SRC, "kiln_bash_kernel.py"), "-f", "{connection_file}"],
            cwd=cls.tmp)

    @classmethod
    def tearDownClass(cls):
        ku.stop_kernel(cls.km, cls.kc)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_cell(self, code, **kw):
        return ku.execute(self.kc, code, **kw)

    def test_streams(self):
        r = self.run_cell("echo out; echo err >&2; printf 'no newline'")
        self.assertEqual(r.stdout, "out\nno newline")
        self.assertEqual(r.stderr, "err\n")
        self.assertEqual(r.errors, [])
        self.assertEqual(r.reply["content"]["status"], "ok")
        self.assertEqual(r.results, [])

    def test_live_output(self):
        r = self.run_cell("echo first; sleep 0.6; echo second")
        self.assertEqual(r.stdout, "first\nsecond\n")
        self.assertGreaterEqual(len(r.stream_times), 2)
        self.assertGreater(r.stream_times[-1][0] - r.stream_times[0][0], 0.4)

    def test_state_persists(self):
        self.run_cell("kiln_var=42; kiln_fn() { echo \"fn:$1\"; }; cd /")
        r = self.run_cell("echo $kiln_var; kiln_fn x; pwd")
        self.assertEqual(r.stdout, "42\nfn:x\n/\n")
        self.run_cell("cd %s" % self.tmp)

    def test_exit_status_error(self):
        r = self.run_cell("echo before; false")
        self.assertEqual(r.stdout, "before\n")
        self.assertEqual(r.reply["content"]["status"], "error")
        self.assertEqual([(e["ename"], e["evalue"]) for e in r.errors], [("BashError", "exit status 1")])
        r = self.run_cell("echo $?")  # $? survives from cell to cell
        self.assertEqual(r.stdout, "1\n")
        r = self.run_cell("ls /nonexistent-kiln-dir")
        self.assertEqual(r.errors[0]["evalue"], "exit status 2")
        self.assertIn("nonexistent-kiln-dir", r.stderr)

    def test_syntax_error(self):
        r = self.run_cell("if then fi")
        self.assertEqual(r.errors[0]["ename"], "BashError")
        self.assertIn("syntax error", r.stderr)
        self.assertEqual(self.run_cell("echo ok").stdout, "ok\n")

    def test_invalid_utf8(self):
        r = self.run_cell("printf '\\xff\\xfeok\\n'; printf '\\xc3'; printf '\\xa9\\n'")
        self.assertEqual(r.stdout, "\ufffd\ufffdok\n\u00e9\n")

    def test_quoting(self):
        code = "echo 'single' \"double $((1+2))\" \\\\back; echo $'tab\\there' | cat -A; echo '!bang'\n# comment"
        r = self.run_cell(code)
        self.assertEqual(r.stdout, "single double 3 \\back\ntab^Ihere$\n!bang\n")
        self.assertEqual(self.run_cell("echo 'héllo wörld ✓'").stdout, "héllo wörld ✓\n")

    def test_multiline(self):
        r = self.run_cell("for i in 1 2 3\ndo\n  echo $i\ndone\ncat <<EOF\nhere $((2*2))\nEOF")
        self.assertEqual(r.stdout, "1\n2\n3\nhere 4\n")

    def test_stdin_is_eof(self):
        r = self.run_cell("cat; read line; echo read=$?")
        self.assertEqual(r.stdout, "read=1\n")

    def test_interrupt_external_command(self):
        self.run_cell("kiln_keep=kept")
        r = self.run_cell("echo started; sleep 60; echo after", on_stream=interrupt_on_marker(self.km), timeout=20)
        self.assertEqual(r.stdout, "started\n")
        self.assertEqual(r.errors[0]["ename"], "KeyboardInterrupt")
        self.assertEqual(self.run_cell("echo $kiln_keep").stdout, "kept\n")

    def test_interrupt_shell_loop(self):
        self.run_cell("kiln_keep2=kept2")
        r = self.run_cell("echo started; while true; do :; done; echo after",
                          on_stream=interrupt_on_marker(self.km), timeout=20)
        self.assertEqual(r.errors[0]["ename"], "KeyboardInterrupt")
        self.assertNotIn("after", r.stdout)
        self.assertEqual(self.run_cell("echo $kiln_keep2").stdout, "kept2\n")

    def test_interrupt_escalates_when_sigint_ignored(self):
        self.run_cell("kiln_keep3=kept3")
        r = self.run_cell("(trap '' INT; echo started; sleep 60)", on_stream=interrupt_on_marker(self.km), timeout=20)
        self.assertEqual(r.errors[0]["ename"], "KeyboardInterrupt")
        self.assertEqual(self.run_cell("echo $kiln_keep3").stdout, "kept3\n")

    def test_zz_exit_restarts_bash(self):
        self.run_cell("cd /tmp; kiln_gone=1")
        r = self.run_cell("echo bye; exit 3")
        self.assertEqual(r.stdout, "bye\n")
        self.assertEqual(r.errors[0]["ename"], "BashError")
        self.assertIn("exited with status 3", r.errors[0]["evalue"])
        r = self.run_cell("echo \"[$kiln_gone]\"; pwd")
        self.assertEqual(r.stdout, "[]\n/tmp\n", r)  # state lost, cwd kept
        self.assertEqual(r.errors, [])
        self.run_cell("cd %s" % self.tmp)


class BashKernelModuleLaunchTest(unittest.TestCase):
    def test_python_m(self):
        km, kc = ku.start_kernel([ku.PYTHON, "-m", "kiln_bash_kernel", "-f", "{connection_file}"], cwd="/")
        try:
            r = ku.execute(kc, "echo $((6*7)); pwd")
            self.assertEqual(r.stdout, "42\n/\n")
            info = kc.kernel_info(reply=True)["content"]
            self.assertEqual(info["language_info"]["name"], "bash")
        finally:
            ku.stop_kernel(km, kc)


class JavaScriptKernelTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="kiln-js-test-")
        cls.km, cls.kc = ku.start_kernel(
            [ku.PYTHON, os.path.join(ku.SRC, "kiln_js_kernel.py"), "-f", "{connection_file}"],
            cwd=cls.tmp)

    @classmethod
    def tearDownClass(cls):
        ku.stop_kernel(cls.km, cls.kc)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_cell(self, code, **kw):
        return ku.execute(self.kc, code, **kw)

    def text(self, r):
        self.assertEqual(r.errors, [], r)
        self.assertEqual(len(r.results), 1, r)
        return r.results[0]["text/plain"]

    def test_console_and_result(self):
        r = self.run_cell('console.log("out", 1); console.info("info"); console.error("err"); console.warn("warn"); 1 + 1')
        self.assertEqual(r.stdout, "out 1\ninfo\n")
        self.assertEqual(r.stderr, "err\nwarn\n")
        self.assertEqual(self.text(r), "2")
        self.assertEqual(r.reply["content"]["status"], "ok")

    def test_result_formatting(self):
        self.assertEqual(self.text(self.run_cell('"str"')), "'str'")
        self.assertEqual(self.text(self.run_cell("({a: 1, b: [1, 2]})")), "{ a: 1, b: [ 1, 2 ] }")
        self.assertEqual(self.text(self.run_cell("{a: 1}")), "{ a: 1 }")
        self.assertEqual(self.text(self.run_cell("null")), "null")
        self.assertEqual(self.text(self.run_cell("new Map([[1, 'x']])")), "Map(1) { 1 => 'x' }")
        r = self.run_cell("undefined")
        self.assertEqual((r.results, r.errors), ([], []))
        r = self.run_cell("let kilnUnused = 1")
        self.assertEqual((r.results, r.errors), ([], []))

    def test_state_persists(self):
        self.run_cell("let kl = 5; const kc = {x: 2}; var kv = 3; function kf(n) { return n * 10 }; class KC { m() { return 7 } }")
        self.assertEqual(self.text(self.run_cell("kf(kl + kc.x + kv) + new KC().m()")), "107")
        r = self.run_cell("let kl = 6")
        self.assertEqual(r.errors[0]["ename"], "SyntaxError")

    def test_top_level_await(self):
        r = self.run_cell("const kAwaited = await new Promise(r => setTimeout(() => r(41), 50)); kAwaited + 1")
        self.assertEqual(self.text(r), "42")
        self.assertEqual(self.text(self.run_cell("kAwaited")), "41")
        r = self.run_cell("await Promise.reject(new RangeError('nope'))")
        self.assertEqual((r.errors[0]["ename"], r.errors[0]["evalue"]), ("RangeError", "nope"))

    def test_errors(self):
        r = self.run_cell("kilnNotDefined")
        e = r.errors[0]
        self.assertEqual((e["ename"], e["evalue"]), ("ReferenceError", "kilnNotDefined is not defined"))
        self.assertEqual(e["traceback"][0], "ReferenceError: kilnNotDefined is not defined")
        self.assertTrue(any("<cell" in line for line in e["traceback"]), e)
        self.assertFalse(any("kiln_js_driver" in line for line in e["traceback"]), e)
        self.assertEqual(r.reply["content"]["status"], "error")
        r = self.run_cell("function kThrow() { throw new TypeError('bad') }\nkThrow()")
        self.assertEqual((r.errors[0]["ename"], r.errors[0]["evalue"]), ("TypeError", "bad"))
        self.assertIn("at kThrow", "\n".join(r.errors[0]["traceback"]))
        r = self.run_cell("syntax error here")
        self.assertEqual(r.errors[0]["ename"], "SyntaxError")
        r = self.run_cell("throw 5")
        self.assertEqual((r.errors[0]["ename"], r.errors[0]["evalue"]), ("Uncaught", "5"))

    def test_require_chdir_env(self):
        self.assertEqual(self.text(self.run_cell("require('path').join('a', 'b')")), "'a/b'")
        self.assertEqual(self.text(self.run_cell("os.EOL")), "'\\n'")
        r = self.run_cell("process.chdir('/tmp'); process.cwd()")
        self.assertEqual(self.text(r), "'/tmp'")
        r = self.run_cell("process.env.KILN_JS_TEST = 'v1'; require('child_process').execSync('echo $KILN_JS_TEST; pwd').toString()")
        self.assertEqual(self.text(r), "'v1\\n/tmp\\n'")
        self.run_cell("process.chdir(%r)" % self.tmp)

    def test_live_output(self):
        r = self.run_cell("console.log('first'); await new Promise(r => setTimeout(r, 600)); console.log('second')")
        self.assertEqual(r.stdout, "first\nsecond\n")
        self.assertGreater(r.stream_times[-1][0] - r.stream_times[0][0], 0.4)

    def test_async_error_later_does_not_kill(self):
        r = self.run_cell("setTimeout(() => { throw new Error('later') }, 0); 'scheduled'")
        self.assertEqual(self.text(r), "'scheduled'")
        r = self.run_cell("await new Promise(r => setTimeout(r, 100)); 'alive'")
        self.assertEqual(self.text(r), "'alive'")

    def test_interrupt_endless_loop(self):
        self.run_cell("var kKeep = 'kept'")
        r = self.run_cell("console.log('started'); while (true) {}", on_stream=interrupt_on_marker(self.km), timeout=20)
        self.assertEqual(r.errors[0]["ename"], "KeyboardInterrupt")
        self.assertEqual(self.text(self.run_cell("kKeep")), "'kept'")

    def test_interrupt_await(self):
        self.run_cell("var kKeep2 = 'kept2'")
        r = self.run_cell("console.log('started'); await new Promise(r => setTimeout(r, 60000))",
                          on_stream=interrupt_on_marker(self.km), timeout=20)
        self.assertEqual(r.errors[0]["ename"], "KeyboardInterrupt")
        self.assertEqual(self.text(self.run_cell("kKeep2")), "'kept2'")

    def test_fresh_process(self):
        self.run_cell("process.chdir('/tmp'); var kBefore = 1")
        pid = self.text(self.run_cell("process.pid"))
        r = self.run_cell("%kiln_fresh_process")
        self.assertEqual((r.errors, r.results, r.reply["content"]["status"]), ([], [], "ok"), r)
        self.assertNotEqual(self.text(self.run_cell("process.pid")), pid)
        self.assertEqual(self.text(self.run_cell("typeof kBefore")), "'undefined'")
        self.assertEqual(self.text(self.run_cell("process.cwd()")), "'/tmp'")
        self.run_cell("process.chdir(%r)" % self.tmp)

    def test_zz_node_death_restarts(self):
        self.run_cell("process.chdir('/tmp'); var kGone = 1")
        r = self.run_cell("console.log('bye'); process.exit(3)")
        self.assertEqual(r.stdout, "bye\n")
        self.assertIn("node exited with status 3", r.errors[0]["evalue"])
        self.assertEqual(self.text(self.run_cell("typeof kGone")), "'undefined'")
        self.assertEqual(self.text(self.run_cell("process.cwd()")), "'/tmp'")
        self.run_cell("process.chdir(%r)" % self.tmp)


class PythonKernelDisplayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.km, cls.kc = ku.start_kernel([ku.PYTHON, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                                         cwd="/tmp")
        r = ku.execute(cls.kc, "import kiln_display; kiln_display.install()", timeout=60)
        assert not r.errors and not r.stdout and not r.stderr and not r.displays, r

    @classmethod
    def tearDownClass(cls):
        ku.stop_kernel(cls.km, cls.kc)

    def test_matplotlib_figure(self):
        r = ku.execute(self.kc, "import matplotlib.pyplot as plt\n"
                                "plt.plot([1, 2, 3], [1, 4, 9], label='squares')\n"
                                "plt.title('Squares')\n"
                                "None")
        self.assertEqual(r.errors, [])
        self.assertEqual(len(r.displays), 1, r)
        d = r.displays[0]
        self.assertEqual(set(d), {"text/plain", "image/png", "e2b/chart"})  # => extra == {}
        self.assertTrue(d["image/png"].startswith("iVBORw0KGgo"))
        chart = d["e2b/chart"]
        self.assertEqual(chart["type"], "line")
        self.assertEqual(chart["title"], "Squares")
        self.assertEqual(chart["elements"], [{"label": "squares", "points": [[1, 1], [2, 4], [3, 9]]}])
        self.assertEqual(chart["x_ticks"], [1, 1.25, 1.5, 1.75, 2, 2.25, 2.5, 2.75, 3])

    def test_dataframe(self):
        r = ku.execute(self.kc, "import pandas as pd\n"
                                "df = pd.DataFrame({'a': [1, 2], 'b': [0.5, float('nan')]})\n"
                                "display(df)\n"
                                "df")
        self.assertEqual(r.errors, [])
        self.assertEqual(len(r.displays), 1)
        self.assertEqual(len(r.results), 1)
        for bundle in (r.displays[0], r.results[0]):
            self.assertEqual(set(bundle), {"text/plain", "text/html", "e2b/data"})
            self.assertEqual(bundle["e2b/data"], {"a": [1, 2], "b": [0.5, None]})
            self.assertIn("<table", bundle["text/html"])

    def test_broken_extractor_does_not_break_cell(self):
        r = ku.execute(self.kc, "import kiln_display, matplotlib.pyplot as plt\n"
                                "_saved = kiln_display._axes_chart\n"
                                "kiln_display._axes_chart = lambda ax: 1 / 0\n"
                                "try:\n"
                                "    fig = plt.figure(); fig.add_subplot().plot([1, 2])\n"
                                "    display(fig)\n"
                                "finally:\n"
                                "    kiln_display._axes_chart = _saved\n"
                                "plt.close('all')\n"
                                "print('done')")
        self.assertEqual(r.errors, [])
        self.assertEqual(r.stdout, "done\n")
        self.assertEqual(r.stderr, "")
        self.assertEqual(len(r.displays), 1)
        self.assertEqual(set(r.displays[0]), {"text/plain", "image/png"})


if __name__ == "__main__":
    unittest.main()
