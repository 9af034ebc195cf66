"""Shared machinery of kiln's wrapper kernels (kiln_bash_kernel, kiln_js_kernel).

A wrapper kernel is an ipykernel Kernel that runs cells in one persistent child
process (bash, node). This module provides:

* ChildKernel: a Kernel base class that owns the child process (own session
  and process group, SIGINT reset to default, stdin /dev/null or a pipe),
  streams the child's stdout/stderr live to IOPub as `stream` messages
  (incremental UTF-8 decoding with replacement of invalid bytes), watches the
  child's exit through a pidfd, and turns SIGINT delivered to the kernel
  (kiln-interp signals the kernel's process group) into an interrupt of the
  child: SIGINT to the child's process group, escalated to SIGTERM and then
  SIGKILL if the cell does not end.

Subclasses implement _spawn_argv(), _after_spawn() and the cell protocol.
"""

import asyncio
import codecs
import errno
import fcntl
import os
import signal
import subprocess
import sys
import time

from ipykernel.kernelbase import Kernel


def _set_nonblocking(fd):
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)


def _reset_child_signals():
    # Runs in the child between fork and exec: the kernel process ignores or
    # catches SIGINT; the child must start with the default disposition so
    # that bash/node can install their own handling.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)


class OutputPipe:
    """Non-blocking read end of a child's stdout or stderr pipe."""

    def __init__(self, fd, name, emit):
        self.fd = fd
        self.name = name
        self.emit = emit
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.eof = False
        _set_nonblocking(fd)

    def _read_once(self):
        """bytes read, None when the pipe is empty, b"" at EOF."""
        while True:
            try:
                return os.read(self.fd, 65536)
            except BlockingIOError:
                return None
            except InterruptedError:
                continue
            except OSError:
                return b""

    def _pump(self, max_chunks):
        chunks = []
        while not self.eof and len(chunks) < max_chunks:
            data = self._read_once()
            if data is None:
                break
            if not data:
                self.eof = True
                break
            chunks.append(data)
        text = self.decoder.decode(b"".join(chunks), final=self.eof) if (chunks or self.eof) else ""
        if text:
            self.emit(self.name, text)
        return bool(chunks)

    def read_available(self):
        """Reads what is in the pipe now (bounded, so that a chatty child does
        not starve the event loop); returns True at EOF."""
        if not self.eof:
            self._pump(16)
        return self.eof

    def drain(self):
        """Reads everything that is in the pipe now."""
        while not self.eof and self._pump(64):
            pass

    def close(self):
        try:
            os.close(self.fd)
        except OSError:
            pass


class ChildKernel(Kernel):
    """Base of the wrapper kernels. See the module docstring."""

    # Seconds after an interrupt before escalating to SIGTERM / SIGKILL.
    interrupt_term_after = 2.0
    interrupt_kill_after = 4.0

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.child = None          # subprocess.Popen
        self.child_pidfd = -1
        self.pipes = []            # [OutputPipe stdout, OutputPipe stderr]
        self.loop = None
        self.child_exited = None   # asyncio.Event set when the child exits
        self.cell_running = False
        self.interrupted = False
        self.interrupt_time = None
        self.escalation = None     # asyncio.TimerHandle list
        self.execution_count_ok = 0
        self._install_sigint()

    # -- signals ------------------------------------------------------------

    def _install_sigint(self):
        # Inside a request the handler goes through the event loop
        # (asyncio's add_signal_handler): the C-level handler then writes to
        # the loop's wakeup pipe, so a SIGINT that lands just before the loop
        # blocks in select wakes it. A plain Python handler would only run
        # when select returns, at the next output of the child or timer.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            try:
                loop.add_signal_handler(signal.SIGINT, self.interrupt_child)
                return
            except (RuntimeError, ValueError, NotImplementedError):
                pass
        try:
            signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:
            pass  # not the main thread (never the case in a launched kernel)

    def pre_handler_hook(self):
        # ipykernel installs default_int_handler (KeyboardInterrupt) around
        # each request; our kernels handle SIGINT themselves.
        self._install_sigint()

    def post_handler_hook(self):
        pass

    def _on_sigint(self, signum, frame):
        if self.loop is not None:
            try:
                self.loop.call_soon_threadsafe(self.interrupt_child)
                return
            except RuntimeError:
                pass
        self.interrupt_child()

    def interrupt_child(self):
        """Interrupts the running cell (no-op between cells)."""
        if not self.cell_running or self.child is None or self.child.poll() is not None:
            return
        self.interrupted = True
        self._interrupt_once()
        if self.loop is not None and self.escalation is None:
            # A SIGINT can be lost (node: it arrives while a vm script ends
            # and the breakOnSigint watchdog swallows it), so repeat it a few
            # times before escalating.
            self.escalation = [
                self.loop.call_later(t, self._escalate, signal.SIGINT)
                for t in (0.5, 1.0, 1.5) if t < self.interrupt_term_after
            ] + [
                self.loop.call_later(self.interrupt_term_after, self._escalate, signal.SIGTERM),
                self.loop.call_later(self.interrupt_kill_after, self._escalate, signal.SIGKILL),
            ]

    def _interrupt_once(self):
        """Delivers one interrupt to the running cell: SIGINT to the child's
        process group (subclasses may use their protocol instead)."""
        self._signal_child_group(signal.SIGINT)

    def _escalate(self, signum):
        if self.cell_running and self.child is not None and self.child.poll() is None:
            if signum == signal.SIGINT:
                self._interrupt_once()
            else:
                self._signal_child_group(signum)

    def _cancel_escalation(self):
        if self.escalation:
            for handle in self.escalation:
                handle.cancel()
        self.escalation = None

    def _signal_child_group(self, signum):
        try:
            os.killpg(self.child.pid, signum)
        except OSError:
            try:
                self.child.send_signal(signum)
            except OSError:
                pass

    # -- child process ------------------------------------------------------

    def _spawn_argv(self):
        raise NotImplementedError

    def _child_env(self):
        env = dict(os.environ)
        # ipykernel sets MPLBACKEND to its inline backend for itself; programs
        # started from bash/node must not inherit that.
        if env.get("MPLBACKEND") == "module://matplotlib_inline.backend_inline":
            del env["MPLBACKEND"]
        return env

    def _extra_pass_fds(self):
        return ()

    def _spawn_cwd(self):
        return None

    def _emit_stream(self, name, text):
        self.send_response(self.iopub_socket, "stream", {"name": name, "text": text})

    async def _start_child(self):
        """Starts the child and registers its pipes with the event loop."""
        self.loop = asyncio.get_running_loop()
        cwd = self._spawn_cwd()
        if cwd is not None and not os.path.isdir(cwd):
            cwd = None
        pass_fds = self._extra_pass_fds()  # before argv: argv may name them
        argv = self._spawn_argv()
        self.child = subprocess.Popen(
            argv,
            stdin=self._child_stdin(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=pass_fds,
            cwd=cwd,
            env=self._child_env(),
            start_new_session=True,
            preexec_fn=_reset_child_signals,
        )
        self._after_fork()
        self.child_exited = asyncio.Event()
        self.child_pidfd = os.pidfd_open(self.child.pid)
        self.loop.add_reader(self.child_pidfd, self._on_child_exit)
        out = OutputPipe(os.dup(self.child.stdout.fileno()), "stdout", self._emit_stream)
        err = OutputPipe(os.dup(self.child.stderr.fileno()), "stderr", self._emit_stream)
        self.child.stdout.close()
        self.child.stderr.close()
        self.pipes = [out, err]
        for p in self.pipes:
            self.loop.add_reader(p.fd, self._on_pipe_readable, p)

    def _child_stdin(self):
        return subprocess.DEVNULL

    def _after_fork(self):
        pass

    def _on_pipe_readable(self, pipe):
        if pipe.read_available():
            self.loop.remove_reader(pipe.fd)

    def _on_child_exit(self):
        self.loop.remove_reader(self.child_pidfd)
        self.child.wait()
        self.child_exited.set()
        self._on_child_exit_hook()

    def _on_child_exit_hook(self):
        pass

    def drain_output(self):
        for p in self.pipes:
            p.drain()

    def _stop_child(self):
        """Kills the child and releases its resources (no restart)."""
        if self.child is None:
            return
        if self.child.poll() is None:
            try:
                os.killpg(self.child.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                self.child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self.loop is not None:
            for p in self.pipes:
                try:
                    self.loop.remove_reader(p.fd)
                except Exception:
                    pass
            if self.child_pidfd >= 0:
                try:
                    self.loop.remove_reader(self.child_pidfd)
                except Exception:
                    pass
        for p in self.pipes:
            p.close()
        self.pipes = []
        if self.child_pidfd >= 0:
            try:
                os.close(self.child_pidfd)
            except OSError:
                pass
        self.child_pidfd = -1
        self._close_protocol_fds()
        self.child = None

    def _close_protocol_fds(self):
        pass

    async def _reap_dead_child(self):
        """After the child died: flush its remaining output, release it."""
        self.drain_output()
        status = self.child.returncode if self.child is not None else None
        self._stop_child()
        return status

    # -- replies ------------------------------------------------------------

    def send_error(self, ename, evalue, traceback):
        content = {"ename": ename, "evalue": evalue, "traceback": traceback}
        self.send_response(self.iopub_socket, "error", content)
        reply = dict(content)
        reply["status"] = "error"
        reply["execution_count"] = self.execution_count
        reply["user_expressions"] = {}
        return reply

    def ok_reply(self):
        return {"status": "ok", "execution_count": self.execution_count,
                "payload": [], "user_expressions": {}}

    def begin_cell(self):
        self.cell_running = True
        self.interrupted = False

    def end_cell(self):
        self.cell_running = False
        self._cancel_escalation()

    def do_shutdown(self, restart):
        self._stop_child()
        return {"status": "ok", "restart": restart}


def exit_description(returncode):
    if returncode is None:
        return "exited"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "signal %d" % -returncode
        return "was killed by %s" % name
    return "exited with status %d" % returncode
