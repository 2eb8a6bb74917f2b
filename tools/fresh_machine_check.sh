#!/usr/bin/env bash
# `bazel test //...` as on a fresh machine: a new clone of this checkout's HEAD, a new empty
# HOME, the README's test set-up (pip may use the shared cache), then Bazel inside a mount
# namespace where HOME is bind-mounted read-only, so that not even root can write there.
# Needs `unshare` (util-linux) and Debian's bazel-bootstrap. Usage, from the repository:
#
#   bash tools/fresh_machine_check.sh [WORK_FOLDER]      # default /tmp/keras_bdgm-fresh
#
# Prints Bazel's summary, its exit status and time, and what HOME holds afterwards.
set -uo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-/tmp/keras_bdgm-fresh}"
rm -rf "$WORK" && mkdir -p "$WORK/home"
git clone -q "$REPO" "$WORK/clone" && cd "$WORK/clone" || exit 1
echo "== $(date -u +%T) set-up (commit $(git rev-parse --short HEAD))"
HOME="$WORK/home" PIP_CACHE_DIR="${PIP_CACHE_DIR:-$HOME/.cache/pip}" \
  bash -c 'python3 -m venv .venv && .venv/bin/pip install -q -e ".[test]"' || exit 1
echo "== $(date -u +%T) bazel test //... with HOME read-only"
WORK="$WORK" unshare -m bash -c '
  mount --bind "$WORK/home" "$WORK/home" && mount -o remount,bind,ro "$WORK/home" || exit 9
  export HOME="$WORK/home"
  if touch "$HOME/probe" 2>/dev/null; then echo "HOME is writable: stopping"; exit 9; fi
  . .venv/bin/activate
  SECONDS=0
  bazel --output_user_root="$WORK/bazel" test //...; rc=$?
  echo "== bazel exit $rc after $SECONDS s"
  bazel --output_user_root="$WORK/bazel" shutdown
  exit $rc'
rc=$?
echo "== $(date -u +%T) done, rc=$rc; HOME holds: $(ls -A "$WORK/home" | tr '\n' ' ')"
exit $rc
