"""Plain IPython (no Jupyter frontend): a text progress line instead of the widget."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .._devnet import Devnet

SCRIPT = """
get_ipython().run_line_magic("load_ext", "gensyn_jupyter")
import torch
w = torch.zeros(2, requires_grad=True)
opt = torch.optim.SGD([w], lr=0.1)
get_ipython().run_cell_magic("gensyn_train", "", '''
for step in range(300):
    loss = ((w - 1.0) ** 2).sum()
    opt.zero_grad(); loss.backward(); opt.step()
''')
print("trained", [round(v, 3) for v in w.tolist()])
"""


def test_plain_ipython_shows_a_text_progress_line(devnet: Devnet, tmp_path: Path) -> None:
    script = tmp_path / "train.ipy"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "--colors=nocolor", str(script)],
        env={**os.environ, **devnet.env()},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr + out
    assert "300 steps" in out or "300 optimizer steps" in out
    assert "trained [1.0, 1.0]" in out
    assert "application/vnd.jupyter.widget-view" not in out
