"""Let a fresh venv see the packages installed in this one (tools/check_wheel.sh).

Usage: ENV/bin/python tools/reuse_site_packages.py FRESH/bin/python LINKDIR

Run with the environment's python whose packages are to be reused (the same
Python version as the fresh venv). LINKDIR gets a symlink to every entry of
this environment's site-packages except those of gensyn-jupyter (the editable
install, whose .pth would put the checkout on sys.path), pip and setuptools
(the fresh venv has its own); a .pth file in the fresh venv adds LINKDIR as a
site dir. The console scripts of the reused packages (``jupyter``,
``jupyter-labextension``...) are written into FRESH/bin, as pip would have,
and their data files (JupyterLab's application under share/jupyter/lab, the
server extension configs under etc/jupyter...) are linked into the fresh
venv's prefix, where a pip install would have put them.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

__all__ = ["main"]

LEFT_OUT = {"gensyn-jupyter", "gensyn_jupyter", "pip", "setuptools"}

SCRIPT = """#!{python}
import sys
from {module} import {head}
if __name__ == "__main__":
    sys.argv[0] = {name!r}
    sys.exit({call}())
"""


def _left_out_entries(site: Path) -> set[str]:
    """Top-level names in site-packages that belong to the left-out distributions."""
    names: set[str] = set()
    for dist in importlib.metadata.distributions(path=[str(site)]):
        if dist.metadata["Name"] not in LEFT_OUT:
            continue
        for file in dist.files or ():
            parts = Path(file).parts
            if parts and parts[0] != "..":
                names.add(parts[0])
    return names


def _write_scripts(site: Path, bindir: Path, python: Path) -> None:
    for dist in importlib.metadata.distributions(path=[str(site)]):
        if dist.metadata["Name"] in LEFT_OUT:
            continue
        for entry in dist.entry_points:
            if entry.group not in ("console_scripts", "gui_scripts"):
                continue
            target = bindir / entry.name
            if target.exists() or entry.attr is None:
                continue
            module, _, attr = entry.value.partition(":")
            head = attr.split(".")[0].strip()
            text = SCRIPT.format(
                python=python, module=module.strip(), head=head, name=entry.name, call=attr.strip()
            )
            target.write_text(text)
            target.chmod(0o755)


def _link_data_files(site: Path, fresh_prefix: Path) -> None:
    prefix = Path(sys.prefix)
    for dist in importlib.metadata.distributions(path=[str(site)]):
        if dist.metadata["Name"] in LEFT_OUT:
            continue
        for file in dist.files or ():
            if Path(file).parts[:1] != ("..",):
                continue
            source = Path(os.path.normpath(site / file))
            if not source.is_relative_to(prefix) or not source.exists():
                continue
            relative = source.relative_to(prefix)
            link = fresh_prefix / relative
            if relative.parts[0] in ("bin", "lib") or link.exists() or link.is_symlink():
                continue
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    python, linkdir = Path(argv[0]).absolute(), Path(argv[1]).absolute()
    fresh_site, fresh_prefix = (
        Path(line)
        for line in subprocess.run(
            [
                str(python),
                "-c",
                "import sys, sysconfig; print(sysconfig.get_paths()['purelib']); print(sys.prefix)",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    )
    site = Path(sysconfig.get_paths()["purelib"])
    left_out = _left_out_entries(site)
    linkdir.mkdir(parents=True, exist_ok=True)
    for entry in sorted(site.iterdir()):
        link = linkdir / entry.name
        if entry.name not in left_out and entry.name != "__pycache__" and not link.exists():
            link.symlink_to(entry)
    (fresh_site / "_reused_site_packages.pth").write_text(
        f"import site; site.addsitedir({str(linkdir)!r})\n"
    )
    _write_scripts(site, python.parent, python)
    _link_data_files(site, fresh_prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
