"""Dishonest providers (``job["cheat"]``): they keep the checkpoint positions of an honest
run and commit well-formed roots, but the model they return is not the trained one."""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch

from gensyn_jupyter.provider import CHEAT_MODES
from gensyn_jupyter.provider import _worker as worker
from gensyn_jupyter.provider._cheats import cheating, perturb_step

from ._harness import Ran, run_worker

CELL = """\
loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(X, Y), batch_size=16, shuffle=True)
for epoch in range(12):
    for xb, yb in loader:
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad(); loss.backward(); opt.step()
"""
"""100 rows in batches of 16: 7 steps an epoch, 84 steps; every 5: 17 segments."""

EVERY = 5


def _mlp(hidden: int = 16) -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(
        torch.nn.Linear(4, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)
    )


def namespace(seed: int = 0, rows: int = 100, hidden: int = 16) -> dict[str, Any]:
    """A kernel's namespace: a 4-16-1 MLP, Adam, a learnable regression set."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 4, generator=gen)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(rows, 1, generator=gen)
    model = _mlp(hidden)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    return {"torch": torch, "X": x, "Y": y, "model": model, "opt": opt}


@contextmanager
def _job_extras(extras: dict[str, Any], sent: list[dict[str, Any]]) -> Iterator[None]:
    """Add ``extras`` to the job the harness hands the worker; keep what it sends."""
    original = worker._run

    def run(job: dict[str, Any], control: Any) -> None:
        stream = io.StringIO()
        try:
            original({**job, **extras}, worker._Control(stream))
        finally:
            sent.extend(json.loads(line) for line in stream.getvalue().splitlines())

    with mock.patch.object(worker, "_run", run):
        yield


def run_as(
    tmp_path: Path,
    mode: str | None,
    ns: dict[str, Any],
    *,
    source: str = CELL,
    every: int = EVERY,
) -> tuple[Ran, list[dict[str, Any]]]:
    """Run ``source`` in the real worker, as the dishonest provider ``mode`` (None: honest).

    Pass the same ``ns`` for runs that must share one bundle (capturing equal
    objects twice gives different bytes: torch pickles storage addresses).
    """
    sent: list[dict[str, Any]] = []
    with _job_extras({"cheat": mode} if mode else {}, sent):
        ran = run_worker(tmp_path, source, ns, every=every)
    return ran, sent


def losses(sent: list[dict[str, Any]]) -> list[float]:
    """The loss curve the user's cell shows, in step order."""
    points = [p for m in sent if m["type"] == "metrics" for p in m["points"]]
    return [p["value"] for p in sorted(points, key=lambda p: p["step"]) if p["name"] == "loss"]


def final_state(ran: Ran) -> dict[str, torch.Tensor]:
    """The model the provider hands back (its end checkpoint)."""
    end = ran.commitment.leaves[-1]
    tree, _hint = ran.store.load(end.step, end.kind)
    return {k: v for k, v in tree["modules"]["model"].items()}


def _loss_of(state: dict[str, torch.Tensor], ns: dict[str, Any]) -> float:
    model = _mlp()
    model.load_state_dict(state)
    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(model(ns["X"]), ns["Y"]))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each provider's run of one bundle (and its messages); the honest one twice; ``ns``."""
    ns = namespace()
    out: dict[str, Any] = {"ns": ns, "honest": run_as(tmp_path_factory.mktemp("honest"), None, ns)}
    for mode in CHEAT_MODES:
        out[mode] = run_as(tmp_path_factory.mktemp(mode), mode, ns)
    out["honest-again"] = run_as(tmp_path_factory.mktemp("again"), None, ns)
    return out


@pytest.mark.parametrize("mode", CHEAT_MODES)
def test_a_cheater_commits_a_well_formed_run_and_says_nothing(
    runs: dict[str, Any], mode: str
) -> None:
    honest, honest_sent = runs["honest"]
    cheat, cheat_sent = runs[mode]
    positions = [(leaf.step, leaf.kind) for leaf in honest.commitment.leaves]
    assert [(leaf.step, leaf.kind) for leaf in cheat.commitment.leaves] == positions
    assert len(positions) == 18 and positions[-1] == (84, "end")
    assert cheat.manifest.steps == honest.manifest.steps == 84
    assert cheat.commitment.root != honest.commitment.root
    assert cheat.commitment.leaves[0].leaf == honest.commitment.leaves[0].leaf
    logs = [m for m in cheat_sent if m["type"] == "log"]
    assert logs == [m for m in honest_sent if m["type"] == "log"]
    assert "cheat" not in json.dumps(cheat_sent)


def test_hooks_are_gone_after_a_cheating_run(runs: dict[str, Any]) -> None:
    # The honest rerun came after every cheater, in the same process.
    assert runs["honest-again"][0].commitment.root == runs["honest"][0].commitment.root


def test_what_the_user_gets_back(runs: dict[str, Any]) -> None:
    ns = runs["ns"]
    initial = _loss_of(ns["model"].state_dict(), ns)
    final = {mode: _loss_of(final_state(runs[mode][0]), ns) for mode in ("honest", *CHEAT_MODES)}
    assert final["honest"] < initial / 5, final
    # stale and fake-loss hand back the initial model.
    for mode in ("stale", "fake-loss"):
        state = final_state(runs[mode][0])
        assert all(torch.equal(state[k], v) for k, v in ns["model"].state_dict().items())
    # Half the updates: a worse model than the honest one.
    assert final["honest"] < final["wrong-data"] < initial, final
    assert final["honest"] < final["skip"] < initial, final
    # The perturbation cannot be seen in the loss: only the commitment shows it.
    assert final["perturb"] == pytest.approx(final["honest"], rel=0.02), final


def test_fake_loss_falls_smoothly_while_the_weights_stay(runs: dict[str, Any]) -> None:
    fake = losses(runs["fake-loss"][1])
    real = losses(runs["stale"][1])
    honest = losses(runs["honest"][1])
    assert len(fake) == len(real) == len(honest) == 84
    assert fake[0] == real[0]  # it starts from the real first loss
    steps = [b - a for a, b in itertools.pairwise(fake)]
    assert all(d < 0 for d in steps), "the fake curve always falls"
    assert all(abs(b - a) < 0.1 * abs(a) for a, b in itertools.pairwise(steps))
    assert fake[-1] < fake[0] / 2
    # The truth: with the weights unchanged the loss never falls; an epoch (7 steps,
    # every row once) of the last costs what one of the first did, up to the batching.
    first, last = sum(real[:7]) / 7, sum(real[-7:]) / 7
    assert 0.7 < last / first < 1.4, (first, last)
    assert fake[-1] < 0.5 * last
    assert sum(honest[-7:]) / 7 < 0.2 * last


def test_perturb_step_and_unknown_mode() -> None:
    assert perturb_step(None) == 7
    assert perturb_step(84) == 34
    assert perturb_step(1) == 1
    with pytest.raises(ValueError, match="unknown cheat 'lazy'"), cheating("lazy"):
        pass
    with cheating(None):  # honest: nothing installed
        pass
