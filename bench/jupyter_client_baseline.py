#!/usr/bin/python3
"""Baseline for bench/interp_bench.sh: the same ipykernel driven by Debian's jupyter_client.

  roundtrip N [LAUNCHER]  print(1) round trips on one warm kernel (execute_request -> iopub idle
                          and execute_reply), after 20 warm-up cells
  cold N [LAUNCHER]       start a new kernel and run print(1) in it, N times (what a code
                          interpreter without kernels started ahead pays for its first cell)
LAUNCHER: "stock" (default): the python3 kernelspec, `python3 -m ipykernel_launcher`, what a
Jupyter user runs; or a path to kiln_ipykernel.py, the launcher kiln-interp starts the same
ipykernel with.
Prints one line: "<mode> p50_ms p99_ms".
"""
import os
import sys
import time

os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
from jupyter_client.kernelspec import KernelSpec  # noqa: E402
from jupyter_client.manager import KernelManager, start_new_kernel  # noqa: E402


def start(launcher):
    if launcher == "stock":
        return start_new_kernel(kernel_name="python3")
    km = KernelManager()
    km._kernel_spec = KernelSpec(argv=["/usr/bin/python3", launcher, "-f", "{connection_file}"],
                                 display_name="kiln_ipykernel", language="python")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
    except RuntimeError:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        raise
    return km, kc


def run_cell(kc, code="print(1)"):
    msg_id = kc.execute(code)
    while True:
        msg = kc.get_iopub_msg(timeout=30)
        if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"):
            break
    while True:
        reply = kc.get_shell_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg_id:
            return


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p * (len(values) - 1) + 0.5))]


def main():
    mode, count = sys.argv[1], int(sys.argv[2])
    launcher = sys.argv[3] if len(sys.argv) > 3 else "stock"
    samples = []
    if mode == "roundtrip":
        km, kc = start(launcher)
        try:
            for _ in range(20):
                run_cell(kc)
            for _ in range(count):
                t = time.perf_counter()
                run_cell(kc)
                samples.append((time.perf_counter() - t) * 1000)
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    elif mode == "cold":
        for _ in range(count):
            t = time.perf_counter()
            km, kc = start(launcher)
            run_cell(kc)
            samples.append((time.perf_counter() - t) * 1000)
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    else:
        sys.exit("usage: jupyter_client_baseline.py roundtrip|cold N [stock|PATH/kiln_ipykernel.py]")
    print("%s %.3f %.3f" % (mode, percentile(samples, 0.5), percentile(samples, 0.99)))


if __name__ == "__main__":
    main()
