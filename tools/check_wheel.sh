#!/bin/bash
# Build the wheel and install it into a fresh venv; both extension lists must
# show gensyn_jupyter enabled and OK with no build step for the user.
# Usage: tools/check_wheel.sh [WORKDIR]   (takes a few minutes: npm build + torch install)
set -euo pipefail
work="${1:-$(mktemp -d)}"
root="$(cd "$(dirname "$0")/.." && pwd)"
python3 -m venv "$work/build-venv"
"$work/build-venv/bin/pip" install -q 'build>=1,<2'
(cd "$root" && "$work/build-venv/bin/python" -m build --wheel --outdir "$work/dist")
python3 -m venv "$work/fresh"
"$work/fresh/bin/pip" install -q torch==2.13.0
"$work/fresh/bin/pip" install -q "$work"/dist/gensyn_jupyter-*.whl 'jupyterlab>=4.4,<5'
labext="$("$work/fresh/bin/jupyter" labextension list 2>&1 | sed 's/\x1b\[[0-9;]*m//g')"
serverext="$("$work/fresh/bin/jupyter" server extension list 2>&1 | sed 's/\x1b\[[0-9;]*m//g')"
echo "$labext" | grep -E 'gensyn-jupyter v[0-9.]+ enabled OK'
echo "$serverext" | grep -E 'gensyn_jupyter [0-9.]+ OK'
echo "wheel OK: $(ls "$work"/dist)"
