"""kiln's bash kernel: a Jupyter kernel running cells in one persistent bash.

Start:  /usr/bin/python3 kiln_bash_kernel.py -f <connection_file>
   or:  /usr/bin/python3 -m kiln_bash_kernel -f <connection_file>
(the directory of this file must be importable: kiln_kernel_base.py lives
beside it).

How it works. The kernel starts `bash --norc --noprofile --noediting -i` in
its own session and process group, stdin a pipe from the kernel, stdout and
stderr pipes to the kernel, plus a status pipe. Interactive mode is what gives
terminal-like semantics: SIGINT aborts the whole command line (the cell) and
bash keeps running with its state. Job control is off (`set +m`), so the
running commands share bash's process group and receive the SIGINT the kernel
forwards there.

Each cell is sent as one line:
    __kiln_pre <id>; eval $'<cell code, ANSI-C quoted>' </dev/null
`__kiln_pre` records the cell id and restores `$?` of the previous cell;
stdin is /dev/null (a `read` or `cat` in a cell sees EOF). When bash comes back
to its prompt, PROMPT_COMMAND writes "<id> <status> <PWD>\\0" to the status
pipe; that ends the cell (output is drained first). A non-zero status is
reported as an error (ename BashError, evalue "exit status N"). If bash dies
(`exit`, a signal), the kernel reports an error and starts a new bash in the
last known working directory.
"""

import asyncio
import os
import sys

if __package__ in (None, "") and os.path.dirname(os.path.abspath(__file__)) not in sys.path:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from kiln_kernel_base import ChildKernel, exit_description, _set_nonblocking  # noqa: E402

__version__ = "1.0.0"

_PROMPT_COMMAND = (
    '__kiln_rc=$?; printf "%s %s %s\\0" "$__kiln_id" "$__kiln_rc" "$PWD" >&$__kiln_sfd'
)


def ansi_c_quote(code):
    """The cell as one bash $'...' word (one line, any bytes but NUL)."""
    out = bytearray(b"$'")
    for b in code.encode("utf-8", "surrogateescape"):
        if b == 0:
            continue
        if b == 0x5C:
            out += b"\\\\"
        elif b == 0x27:
            out += b"\\'"
        elif b < 0x20 or b == 0x7F:
            out += b"\\x%02x" % b
        else:
            out.append(b)
    out += b"'"
    return bytes(out)


class BashKernel(ChildKernel):
    implementation = "kiln_bash_kernel"
    implementation_version = __version__
    banner = "kiln bash kernel"
    language_info = {
        "name": "bash",
        "codemirror_mode": "shell",
        "mimetype": "text/x-sh",
        "file_extension": ".sh",
    }

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.status_r = -1
        self.status_w = -1
        self.status_buf = b""
        self.cell_seq = 0
        self.waiting = None        # (cell id, future)
        self.last_pwd = None
        self.discard_output = False

    # -- child --------------------------------------------------------------

    def _spawn_argv(self):
        return ["bash", "--norc", "--noprofile", "--noediting", "-i"]

    def _spawn_cwd(self):
        return self.last_pwd

    def _child_stdin(self):
        import subprocess
        return subprocess.PIPE

    def _extra_pass_fds(self):
        self.status_r, self.status_w = os.pipe()
        return (self.status_w,)  # pass_fds keeps the fd number in bash

    def _after_fork(self):
        self.child_status_fd = self.status_w
        os.close(self.status_w)
        self.status_w = -1

    def _close_protocol_fds(self):
        if self.status_r >= 0:
            try:
                self.loop.remove_reader(self.status_r)
            except Exception:
                pass
            os.close(self.status_r)
        self.status_r = -1
        self.status_buf = b""

    def _emit_stream(self, name, text):
        if self.discard_output:
            return
        super()._emit_stream(name, text)

    def _on_status_readable(self):
        try:
            data = os.read(self.status_r, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.loop.remove_reader(self.status_r)
            return
        self.status_buf += data
        while b"\0" in self.status_buf:
            record, self.status_buf = self.status_buf.split(b"\0", 1)
            parts = record.split(b" ", 2)
            if len(parts) < 2:
                continue
            cell_id = parts[0].decode("utf-8", "replace")
            try:
                rc = int(parts[1])
            except ValueError:
                rc = 1
            if len(parts) == 3 and parts[2]:
                self.last_pwd = os.fsdecode(parts[2])
            if self.waiting is None:
                continue
            want, fut = self.waiting
            if fut.done():
                continue
            if cell_id == want:
                fut.set_result(rc)
            elif self.interrupted:
                # SIGINT reached bash before it parsed the cell line: the line
                # was discarded and bash is back at its prompt.
                fut.set_result(130)

    async def _write_stdin(self, data):
        fd = self.child.stdin.fileno()
        view = memoryview(data)

        def write_all():
            pos = 0
            while pos < len(view):
                pos += os.write(fd, view[pos:])

        await self.loop.run_in_executor(None, write_all)

    def _expect_status(self, cell_id):
        """Registers interest in the status record of cell_id; call before
        sending the line (a fast cell can report before the write returns)."""
        self.waiting = (cell_id, self.loop.create_future())

    async def _wait_status(self):
        """Waits for the expected status; returns rc or None if bash died."""
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

    async def _start_bash(self):
        await self._start_child()
        status_fd = self.child_status_fd
        _set_nonblocking(self.status_r)
        self.loop.add_reader(self.status_r, self._on_status_readable)
        init = (
            "exec {__kiln_sfd}>&%d; exec %d>&-; readonly __kiln_sfd; "
            "__kiln_rc=0; __kiln_id=init; "
            "__kiln_pre() { __kiln_id=$1; return $__kiln_rc; }; readonly -f __kiln_pre; "
            "PROMPT_COMMAND='%s'; readonly PROMPT_COMMAND; "
            "PS1=''; PS2=''; set +m +H; set +o history; unset HISTFILE MAILCHECK\n"
        ) % (status_fd, status_fd, _PROMPT_COMMAND)
        self.discard_output = True
        try:
            self._expect_status("init")
            await self._write_stdin(init.encode())
            rc = await asyncio.wait_for(self._wait_status(), timeout=30)
        finally:
            self.drain_output()
            self.discard_output = False
        if rc is None:
            raise RuntimeError("bash %s during start" % exit_description(self.child.returncode))

    async def _ensure_bash(self):
        """Starts bash if needed; returns a notice when an earlier bash had
        died since the last cell."""
        notice = None
        if self.child is not None and self.child.poll() is not None:
            status = await self._reap_dead_child()
            notice = "bash %s; started a new bash (shell state was lost)\n" % exit_description(status)
        if self.child is None:
            await self._start_bash()
        return notice

    # -- execution ----------------------------------------------------------

    async def do_execute(self, code, silent, store_history=True, user_expressions=None,
                         allow_stdin=False, *, cell_id=None):
        self.loop = asyncio.get_running_loop()
        try:
            notice = await self._ensure_bash()
        except Exception as e:  # cannot start bash at all
            self._stop_child()
            return self.send_error("BashError", "cannot start bash: %s" % e, ["BashError: cannot start bash: %s" % e])
        if notice:
            self._emit_stream("stderr", notice)
        if not code.strip():
            return self.ok_reply()

        self.cell_seq += 1
        cid = str(self.cell_seq)
        line = b"__kiln_pre " + cid.encode() + b"; eval " + ansi_c_quote(code) + b" </dev/null\n"
        self.begin_cell()
        try:
            self._expect_status(cid)
            try:
                await self._write_stdin(line)
            except OSError:
                pass  # bash died; noticed below
            rc = await self._wait_status()
            self.drain_output()
        finally:
            interrupted = self.interrupted
            self.end_cell()

        if rc is None:
            status = await self._reap_dead_child()
            msg = "bash %s; started a new bash (shell state was lost)" % exit_description(status)
            try:
                await self._start_bash()
            except Exception as e:
                self._stop_child()
                msg += "; restart failed: %s" % e
            return self.send_error("BashError", msg, ["BashError: " + msg])
        if interrupted and rc != 0:
            return self.send_error("KeyboardInterrupt", "interrupted (exit status %d)" % rc,
                                   ["KeyboardInterrupt: interrupted (exit status %d)" % rc])
        if rc != 0:
            return self.send_error("BashError", "exit status %d" % rc, ["BashError: exit status %d" % rc])
        return self.ok_reply()

    async def do_is_complete(self, code):
        return {"status": "complete"}


def main():
    from ipykernel.kernelapp import IPKernelApp
    IPKernelApp.launch_instance(kernel_class=BashKernel)


if __name__ == "__main__":
    main()
