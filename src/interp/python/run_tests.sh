#!/bin/sh
# Runs the tests of kiln's in-kernel Python/JS helpers (kiln_display, kiln_ipykernel, the bash
# and JavaScript wrapper kernels). Needs Debian's python3 with ipykernel,
# jupyter_client, pandas, matplotlib, seaborn, and node on PATH.
# Exits non-zero on failure.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
python=${KILN_TEST_PYTHON:-/usr/bin/python3}
cd "$here/tests"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
export PYDEVD_DISABLE_FILE_VALIDATION=1
export MPLCONFIGDIR="${TMPDIR:-/tmp}/kiln-interp-python-tests-mpl-$$"
trap 'rm -rf "$MPLCONFIGDIR"' EXIT
exec_status=0
"$python" -m unittest -v test_display test_kernels test_fast_kernel || exec_status=$?
exit $exec_status
