"""The scale-up notebook, run for real: ``--gpus 2`` on the devnet, then ``--network`` a lab."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from .._devnet import Devnet
from .._notebooks import cell_text

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "scale_up.ipynb"


@pytest.mark.timeout(600)
def test_the_scale_up_notebook_trains_on_two_ranks_then_on_another_network(
    devnet: Devnet, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in devnet.env().items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3").execute(env=dict(os.environ))
    code = [c for c in nb.cells if c.cell_type == "code"]
    out = [cell_text(c) for c in code]

    assert "44 batches of 32 per epoch in one process" in out[0]
    two = out[1]
    assert "submitted to " + devnet.url in two
    assert "2 ranks, torch.distributed gloo process group started" in two
    assert "`loader` sharded per rank" in two
    assert "epoch 7: loss" in two and "epoch 0: loss" in two
    assert two.count("epoch 7: loss") == 1  # rank 0's prints only
    accuracy = float(out[2].split("test accuracy: ")[1].split("%")[0])
    assert accuracy > 90.0, out[2]
    # 8 epochs x 22 batches on each rank, each rank's loss its own series
    assert "loss: 176 steps" in out[2] and "loss (rank 1): 176 steps" in out[2]
    assert "44 batches per epoch" in out[2]

    ddp = out[3]
    assert "the cell sets up data parallelism itself" in ddp
    assert "epoch 1: loss" in ddp and "on rank 0 of 2" in ddp

    lab_url = out[4].split("lab network at ")[1].split()[0]
    assert lab_url != devnet.url and "lab-box" in out[4]
    lab_run = out[5]
    assert "submitted to " + lab_url in lab_run
    assert "running on provider lab-box" in lab_run
    assert "epoch 1: loss" in lab_run
    after = float(out[6].split("after the lab run: ")[1].split("%")[0])
    assert after > 90.0
