"""The committed contract artifacts match the Solidity sources, and the package finds them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gensyn_jupyter.chain._artifacts import load_artifact, read_artifact

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "contracts" / "build.mjs"
ARTIFACT = ROOT / "gensyn_jupyter" / "chain" / "artifacts" / "TaskMarket.json"

needs_solc = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules" / "solc").is_dir(),
    reason="node and the npm solc package are needed (npm install)",
)


@needs_solc
def test_committed_artifacts_are_up_to_date() -> None:
    """Recompiles contracts/*.sol in memory and compares with the committed JSON."""
    done = subprocess.run(
        ["node", str(BUILD), "--check"], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout


@needs_solc
def test_check_names_a_stale_artifact(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "contracts", tmp_path / "contracts")
    for artifact in ("gensyn_jupyter/chain/artifacts", "tests/chain/artifacts"):
        shutil.copytree(ROOT / artifact, tmp_path / artifact)
    stale = tmp_path / "gensyn_jupyter/chain/artifacts/TaskMarket.json"
    data = json.loads(stale.read_text())
    data["bytecode"] = data["bytecode"][:-2] + "00"
    stale.write_text(json.dumps(data, indent=2) + "\n")
    done = subprocess.run(
        ["node", str(tmp_path / "contracts" / "build.mjs"), "--check"],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "NODE_PATH": str(ROOT / "node_modules")},
    )
    assert done.returncode == 1
    assert "gensyn_jupyter/chain/artifacts/TaskMarket.json" in done.stderr
    assert "npm run build:contracts" in done.stderr
    assert "tests/chain/artifacts/Reentrant.json" not in done.stderr


def test_the_package_loads_abi_and_bytecode() -> None:
    artifact = load_artifact()
    assert artifact.contract_name == "TaskMarket"
    assert artifact.bytecode.startswith("0x6") and len(artifact.bytecode) > 1000
    assert artifact.deployed_bytecode.startswith("0x")
    assert len(artifact.deployed_bytecode) < len(artifact.bytecode)
    names = {(e["type"], e.get("name")) for e in artifact.abi}
    for function in (
        "stake",
        "requestUnstake",
        "withdrawStake",
        "createTask",
        "cancelTask",
        "assign",
        "commit",
        "challenge",
        "resolve",
        "finalize",
        "expire",
        "withdraw",
        "getTask",
        "stakeOf",
        "credits",
        "totalEscrow",
        "totalStake",
        "totalBonds",
        "totalCredits",
    ):
        assert ("function", function) in names
    for error in ("NotOperator", "WrongPayment", "StillUnbonding", "ChallengeWindowOpen"):
        assert ("error", error) in names
    assert artifact.compiler.startswith("0.8.")
    assert artifact.settings["optimizer"]["enabled"] is True
    assert read_artifact(ARTIFACT) == artifact


def test_the_artifact_names_the_source_it_was_built_from() -> None:
    """sourceSha256 covers contracts/TaskMarket.sol as build.mjs hashes it (no node needed)."""
    path = "contracts/TaskMarket.sol"
    digest = hashlib.sha256(f"{path}\0{(ROOT / path).read_text()}\0".encode()).hexdigest()
    assert load_artifact().source_sha256 == digest


def test_unknown_artifacts_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="npm run build:contracts"):
        load_artifact("NoSuchContract")
    with pytest.raises(ValueError, match="not a contract name"):
        load_artifact("../TaskMarket")
    broken = tmp_path / "Broken.json"
    broken.write_text(json.dumps({"contractName": "Broken", "abi": []}))
    with pytest.raises(ValueError, match="bytecode"):
        read_artifact(broken)
