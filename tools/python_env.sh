#!/bin/sh
# Python interpreter for Bazel's py_test/py_binary targets: the active environment's python.
#
# Bazel's tests do not see the shell's environment, so .bazelrc forwards VIRTUAL_ENV
# (set by `. .venv/bin/activate`) and CONDA_PREFIX. Without either, the first `python3`
# on PATH is used. The packages keras_bdgm needs (tensorflow, tf_keras, larq,
# tensorflow-probability, ...) must be installed in that environment: see setup.py.
for prefix in "${VIRTUAL_ENV:-}" "${CONDA_PREFIX:-}"; do
  if [ -n "$prefix" ] && [ -x "$prefix/bin/python3" ]; then
    exec "$prefix/bin/python3" "$@"
  fi
done
if PYTHON3="$(PATH="$PATH" command -v python3)"; then
  exec "$PYTHON3" "$@"
fi
echo "tools/python_env.sh: no Python found. Activate the environment that has keras_bdgm's" \
  "dependencies (e.g. '. .venv/bin/activate') before running bazel." >&2
exit 1
