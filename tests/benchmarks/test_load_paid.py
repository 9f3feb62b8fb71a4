"""`python -m benchmarks.load`, paid and small: each task settles once, nothing is paid twice.

A coordinator with the escrow on a real anvil, kernels that fund and sign
their orders, staked providers that commit on chain (the benchmark's
``baseline`` setup, 4 tasks: the replicas and kills take over a minute and run
in `gensyn bench`). The benchmark's own checks (results, leases, events and
balances on chain) must pass; the test reads what it prints, as a user would.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gensyn_jupyter.chain import anvil_binary

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_a_small_paid_load_settles_each_task_once_and_pays_nothing_twice() -> None:
    if anvil_binary() is None:
        message = "anvil not installed: run `npm install` (it installs @foundry-rs/anvil)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    command = [sys.executable, "-m", "benchmarks.load", "--setup", "baseline"]
    command += ["--tasks", "4", "--kernels", "2", "--providers", "2"]
    result = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=200, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    checks = next(line for line in output.splitlines() if line.startswith("checks:"))
    assert "every job settled exactly once with the right result" in checks, checks
    assert "nothing paid twice" in checks, checks
    assert "4 settled tasks each funded, assigned, committed and finalized once" in output
    balance = re.search(r"market balance ([\d.]+) ETH = escrow 0 \+ stake 2 \+ bonds 0", output)
    assert balance is not None, output[-3000:]
    row = next(line for line in output.splitlines() if line.startswith("| 1 coordinator"))
    assert re.search(r"\| 4 \| [\d.,]+ \| [\d.,]+ \|", row), row
