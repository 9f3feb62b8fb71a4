"""`gensyn bench --quick` runs every benchmark (but load) to the end and prints its tables.

It checks that the benchmarks run (a CI job must notice when one breaks),
never how fast anything was: timings on shared machines are noisy.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import BENCHMARKS

REPO = Path(__file__).resolve().parents[2]
TABLES = {
    "dispatch": "### dispatch of a trivial cell",
    "training": "### training throughput",
    "transfer": "### transfer on loopback",
    "warmstart": "### lease to first training step",
    "memory": "### memory",
    "scaling": "### coordinator throughput",
    "verification (spot)": "### spot: a verifier replays",
    "verification (replicate)": "### replicate: the referee's cost",
    "verification (determinism)": "### determinism: the same plain cell",
}


@pytest.mark.xdist_group("bench")
@pytest.mark.timeout(1500)
def test_gensyn_bench_quick_prints_every_table(tmp_path: Path) -> None:
    gensyn = Path(sys.executable).with_name("gensyn")
    env = {**os.environ, "GENSYN_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        # load has its own test (tests/benchmarks/test_load_paid.py): 2-5 minutes here
        [str(gensyn), "bench", "--quick", "--only", *(n for n in BENCHMARKS if n != "load")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "FAILED" not in output, output[-6000:]
    for name, title in TABLES.items():
        start = output.find(title)
        assert start >= 0, f"no table from {name}:\n{output[-4000:]}"
        table = output[start:].split("\n\n", 2)[1]
        rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
        assert rows, f"{name} printed an empty table:\n{table}"
        assert all(re.search(r"\d", row) for row in rows), table
