"""Starting kiln kernels through jupyter_client and collecting cell output."""

import os
import queue
import sys
import time

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import KernelManager

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
PYTHON = "/usr/bin/python3"


def start_kernel(argv, cwd=None, env=None):
    """Starts a kernel with the given argv ({connection_file} is replaced);
    returns (KernelManager, BlockingKernelClient) once it answers."""
    km = KernelManager()
    km._kernel_spec = KernelSpec(argv=argv, display_name="kiln-test", language="x", env=env or {})
    kw = {}
    if cwd:
        kw["cwd"] = cwd
    extra_env = dict(os.environ)
    extra_env["PYTHONPATH"] = SRC + (":" + extra_env["PYTHONPATH"] if extra_env.get("PYTHONPATH") else "")
    km.start_kernel(env=extra_env, **kw)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
    except RuntimeError:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        raise
    return km, kc


def stop_kernel(km, kc):
    try:
        kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)


class CellResult:
    def __init__(self):
        self.stdout = ""
        self.stderr = ""
        self.results = []     # execute_result data dicts
        self.displays = []    # display_data data dicts
        self.errors = []      # error contents
        self.reply = None
        self.stream_times = []  # (monotonic time, name, text)
        self.execution_count = None

    def __repr__(self):
        return "CellResult(stdout=%r, stderr=%r, results=%r, errors=%r, status=%r)" % (
            self.stdout, self.stderr, self.results, self.errors,
            self.reply and self.reply["content"]["status"])


def execute(kc, code, timeout=30, on_stream=None):
    """Runs one cell; collects IOPub messages until the kernel is idle again
    for this request and the shell reply arrived."""
    # stop_on_error=False: with the default, ipykernel aborts requests that
    # arrive right after an error reply (status "aborted", cell not run).
    msg_id = kc.execute(code, stop_on_error=False)
    res = CellResult()
    deadline = time.monotonic() + timeout
    idle = False
    while not idle:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("cell did not finish: %r; so far %r" % (code, res))
        try:
            msg = kc.get_iopub_msg(timeout=remaining)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        t = msg["msg_type"]
        c = msg["content"]
        if t == "stream":
            res.stream_times.append((time.monotonic(), c["name"], c["text"]))
            if c["name"] == "stdout":
                res.stdout += c["text"]
            else:
                res.stderr += c["text"]
            if on_stream:
                on_stream(c["name"], c["text"])
        elif t == "execute_result":
            res.results.append(c["data"])
        elif t == "display_data":
            res.displays.append(c["data"])
        elif t == "error":
            res.errors.append(c)
        elif t == "execute_input":
            res.execution_count = c.get("execution_count")
        elif t == "status" and c["execution_state"] == "idle":
            idle = True
    res.reply = kc.get_shell_msg(timeout=max(1, deadline - time.monotonic()))
    while res.reply["parent_header"].get("msg_id") != msg_id:
        res.reply = kc.get_shell_msg(timeout=max(1, deadline - time.monotonic()))
    return res
