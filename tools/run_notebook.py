"""Execute a notebook headless in a real kernel and print what its cells printed.

Used by ``make demo``: ``python tools/run_notebook.py notebooks/quickstart.ipynb``.
The executed copy is written next to it as ``<name>.out.ipynb``; with
``--in-place`` the notebook itself gets the outputs (the saved snapshots that
GitHub shows: ``python tools/run_notebook.py --in-place notebooks/*.ipynb``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("notebooks", type=Path, nargs="+")
    parser.add_argument(
        "--in-place", action="store_true", help="save the outputs into the notebook itself"
    )
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args()
    return max(_run(path, args.timeout, in_place=args.in_place) for path in args.notebooks)


def _run(path: Path, timeout: int, *, in_place: bool) -> int:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": "."}}
    )
    started = time.monotonic()
    failed = False
    try:
        client.execute()
    except CellExecutionError as exc:
        failed = True
        print(exc, file=sys.stderr)
    out = path if in_place and not failed else path.with_suffix(".out.ipynb")
    nb.metadata.pop("widgets", None)  # live widget state means nothing in a snapshot
    nbformat.write(nb, out)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                sys.stdout.write(output["text"])
            elif "data" in output and "text/plain" in output["data"]:
                print(output["data"]["text/plain"])
    state = "FAILED" if failed else "ran"
    print(f"\n{path} {state} in {time.monotonic() - started:.1f} s; executed copy: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
