"""kiln's JavaScript kernel: a Jupyter kernel running cells in one persistent
node process (kiln_js_driver.js, beside this file).

Start:  /usr/bin/python3 kiln_js_kernel.py -f <connection_file>
   or:  /usr/bin/python3 -m kiln_js_kernel -f <connection_file>
node is taken from PATH (or from $KILN_NODE when set).

The kernel starts `node --expose-internals kiln_js_driver.js <cmd fd> <resp fd>`
in its own session and process group with stdin /dev/null, stdout/stderr
pipes (streamed live as `stream` messages) and two protocol pipes carrying
JSON lines (see the driver). The value of a cell's last expression becomes an
execute_result with text/plain (util.inspect, as the node REPL shows it);
thrown errors become error messages (ename, evalue, stack lines). SIGINT to
the kernel interrupts the running cell (forwarded to node's process group;
escalated to SIGTERM and SIGKILL when the cell does not stop). If node dies,
the kernel reports an error and starts a new node in the last known working
directory.
"""

import asyncio
import json
import os
import shutil
import signal
import sys

if __package__ in (None, "") and os.path.dirname(os.path.abspath(__file__)) not in sys.path:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from kiln_kernel_base import ChildKernel, exit_description, _set_nonblocking  # noqa: E402

__version__ = "1.0.0"

DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kiln_js_driver.js")

# A cell of exactly this text replaces the node process with a new one in the same working
# directory. kiln-interp sends it after the sandbox was restored from a memory snapshot while
# node had run none of the user's code: V8's Math.random and OpenSSL's generators cannot be
# reseeded in place, and every copy of the snapshot would go on with the same sequences.
FRESH_PROCESS = "%kiln_fresh_process"


class JavaScriptKernel(ChildKernel):
    implementation = "kiln_js_kernel"
    implementation_version = __version__
    banner = "kiln JavaScript kernel (node)"
    language_info = {
        "name": "javascript",
        "mimetype": "application/javascript",
        "file_extension": ".js",
        "codemirror_mode": "javascript",
    }

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.cmd_r = self.cmd_w = -1
        self.resp_r = self.resp_w = -1
        self.resp_buf = b""
        self.waiting = None   # (id, future)
        self.cell_seq = 0
        self.last_cwd = None
        self.js_phase = None  # "run" (vm script running) / "wait" (await)

    # -- child --------------------------------------------------------------

    def _node(self):
        return os.environ.get("KILN_NODE") or shutil.which("node") or "node"

    def _spawn_argv(self):
        return [self._node(), "--expose-internals", DRIVER, str(self.cmd_r), str(self.resp_w)]

    def _spawn_cwd(self):
        return self.last_cwd

    def _extra_pass_fds(self):
        self.cmd_r, self.cmd_w = os.pipe()
        self.resp_r, self.resp_w = os.pipe()
        return (self.cmd_r, self.resp_w)

    def _after_fork(self):
        os.close(self.cmd_r)
        os.close(self.resp_w)
        self.cmd_r = self.resp_w = -1

    def _close_protocol_fds(self):
        if self.resp_r >= 0:
            try:
                self.loop.remove_reader(self.resp_r)
            except Exception:
                pass
            os.close(self.resp_r)
        if self.cmd_w >= 0:
            os.close(self.cmd_w)
        self.resp_r = self.cmd_w = -1
        self.resp_buf = b""

    def _on_resp_readable(self):
        try:
            data = os.read(self.resp_r, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.loop.remove_reader(self.resp_r)
            return
        self.resp_buf += data
        while b"\n" in self.resp_buf:
            line, self.resp_buf = self.resp_buf.split(b"\n", 1)
            try:
                msg = json.loads(line.decode("utf-8", "replace"))
            except ValueError:
                continue
            if not isinstance(msg, dict):
                continue
            if "phase" in msg:
                self.js_phase = msg["phase"]
                continue
            self.js_phase = None
            if isinstance(msg.get("cwd"), str):
                self.last_cwd = msg["cwd"]
            if self.waiting is not None:
                want, fut = self.waiting
                if msg.get("id") == want and not fut.done():
                    fut.set_result(msg)

    def _expect(self, msg_id):
        self.waiting = (msg_id, self.loop.create_future())

    async def _wait_response(self):
        fut = self.waiting[1]
        exited = asyncio.ensure_future(self.child_exited.wait())
        try:
            await asyncio.wait([fut, exited], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.waiting = None
            if not exited.done():
                exited.cancel()
        if fut.done():
            return fut.result()
        fut.cancel()
        return None

    async def _send(self, obj):
        data = (json.dumps(obj) + "\n").encode("utf-8", "surrogatepass")
        fd = self.cmd_w
        view = memoryview(data)

        def write_all():
            pos = 0
            while pos < len(view):
                pos += os.write(fd, view[pos:])

        await self.loop.run_in_executor(None, write_all)

    def _interrupt_once(self):
        # The driver is always told through the command pipe (that ends a
        # top-level await). Only while the synchronous part of a cell runs
        # (vm breakOnSigint) is SIGINT sent as well: a SIGINT outside a vm
        # run can be swallowed by node's SIGINT watchdog and then break a
        # later, unrelated script run.
        self._on_resp_readable()  # latest phase report
        if self.cmd_w >= 0 and self.waiting is not None:
            data = (json.dumps({"interrupt": self.waiting[0]}) + "\n").encode()
            try:
                os.set_blocking(self.cmd_w, False)
                try:
                    os.write(self.cmd_w, data)
                finally:
                    os.set_blocking(self.cmd_w, True)
            except OSError:
                pass
        if self.js_phase == "run":
            # after the pipe message: the driver checks for it to tell a
            # genuine interrupt from a stale one
            self._signal_child_group(signal.SIGINT)

    async def _start_node(self):
        await self._start_child()
        _set_nonblocking(self.resp_r)
        self._expect("ready")
        self.loop.add_reader(self.resp_r, self._on_resp_readable)
        msg = await asyncio.wait_for(self._wait_response(), timeout=30)
        if msg is None:
            self.drain_output()
            raise RuntimeError("node %s during start" % exit_description(self.child.returncode))

    async def _ensure_node(self):
        notice = None
        if self.child is not None and self.child.poll() is not None:
            status = await self._reap_dead_child()
            notice = "node %s; started a new node process (state was lost)\n" % exit_description(status)
        if self.child is None:
            await self._start_node()
        return notice

    # -- execution ----------------------------------------------------------

    async def do_execute(self, code, silent, store_history=True, user_expressions=None,
                         allow_stdin=False, *, cell_id=None):
        self.loop = asyncio.get_running_loop()
        if code.strip() == FRESH_PROCESS:
            if self.child is not None:
                self.drain_output()
                self._stop_child()
        try:
            notice = await self._ensure_node()
        except Exception as e:
            self._stop_child()
            msg = "cannot start node: %s" % e
            return self.send_error("Error", msg, ["Error: " + msg])
        if notice:
            self._emit_stream("stderr", notice)
        if not code.strip() or code.strip() == FRESH_PROCESS:
            return self.ok_reply()

        self.cell_seq += 1
        cid = str(self.cell_seq)
        self.begin_cell()
        try:
            self._expect(cid)
            try:
                await self._send({"id": cid, "code": code})
            except OSError:
                pass  # node died; noticed below
            msg = await self._wait_response()
            self.drain_output()
        finally:
            self.end_cell()

        if msg is None:
            status = await self._reap_dead_child()
            text = "node %s; started a new node process (state was lost)" % exit_description(status)
            try:
                await self._start_node()
            except Exception as e:
                self._stop_child()
                text += "; restart failed: %s" % e
            return self.send_error("Error", text, ["Error: " + text])
        if msg.get("status") == "error":
            return self.send_error(str(msg.get("ename") or "Error"), str(msg.get("evalue") or ""),
                                   [str(x) for x in (msg.get("traceback") or [])])
        result = msg.get("result")
        if isinstance(result, str) and not silent:
            self.send_response(self.iopub_socket, "execute_result", {
                "execution_count": self.execution_count,
                "data": {"text/plain": result},
                "metadata": {},
            })
        return self.ok_reply()

    async def do_is_complete(self, code):
        return {"status": "complete"}


def main():
    from ipykernel.kernelapp import IPKernelApp
    IPKernelApp.launch_instance(kernel_class=JavaScriptKernel)


if __name__ == "__main__":
    main()
