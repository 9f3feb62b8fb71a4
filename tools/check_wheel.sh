#!/bin/bash
# Build the wheel and install it into a fresh venv; both extension lists must
# show gensyn_jupyter enabled and OK with no build step for the user.
# Usage: tools/check_wheel.sh [WORKDIR]   (takes a few minutes: npm build + torch install)
#
# GENSYN_WHEEL_REUSE_DEPS=/path/to/env/bin/python (the test suite sets it to
# .venv's): the fresh venv sees that environment's installed packages (through
# a .pth file; the editable gensyn-jupyter, pip and setuptools left out) instead
# of downloading torch, JupyterLab and the rest again. pip still resolves the
# wheel's requirements against them and installs the wheel itself into the
# fresh venv, with its labextension, server config and `gensyn` script.
set -euo pipefail
work="${1:-$(mktemp -d)}"
root="$(cd "$(dirname "$0")/.." && pwd)"
reuse="${GENSYN_WHEEL_REUSE_DEPS:-}"
python3 -m venv "$work/build-venv"
"$work/build-venv/bin/pip" install -q 'build>=1,<2'
(cd "$root" && "$work/build-venv/bin/python" -m build --wheel --outdir "$work/dist")
if [ -n "$reuse" ]; then
  "$reuse" -m venv "$work/fresh"
  "$reuse" "$root/tools/reuse_site_packages.py" "$work/fresh/bin/python" "$work/reused"
else
  python3 -m venv "$work/fresh"
  "$work/fresh/bin/pip" install -q torch==2.13.0
fi
"$work/fresh/bin/pip" install "$work"/dist/gensyn_jupyter-*.whl 'jupyterlab>=4.4,<5' |
  grep -v '^WARNING: Location'
# The package, not a checkout, is what the fresh venv imports.
(cd "$work" && fresh/bin/python -c 'import gensyn_jupyter; print(gensyn_jupyter.__file__)') |
  grep -F "/fresh/lib/"
labext="$("$work/fresh/bin/jupyter" labextension list 2>&1 | sed 's/\x1b\[[0-9;]*m//g')"
serverext="$("$work/fresh/bin/jupyter" server extension list 2>&1 | sed 's/\x1b\[[0-9;]*m//g')"
echo "$labext" | grep -E 'gensyn-jupyter v[0-9.]+ enabled OK'
echo "$serverext" | grep -E 'gensyn_jupyter [0-9.]+ OK'
echo "wheel OK: $(ls "$work"/dist)"
