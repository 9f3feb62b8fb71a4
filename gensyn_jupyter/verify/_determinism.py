"""The determinism class of a run and the settings that make a replay bitwise equal.

Within one class (same torch, device, CUDA/cuDNN, thread count) a run with
:func:`deterministic_mode` on reproduces bit for bit; across classes only a
distance can be compared. Ops without a deterministic kernel warn rather than
fail (a cell that ran before still runs); :class:`NondeterminismWatch` records
them so the commitment says which.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from ..protocol import DeterminismClass

__all__ = [
    "CUBLAS_WORKSPACE_CONFIG",
    "NondeterminismWatch",
    "determinism_class",
    "deterministic_mode",
    "seed_everything",
    "seed_for",
]

CUBLAS_WORKSPACE_CONFIG = ":4096:8"
"""cuBLAS needs a fixed workspace for deterministic results; set before CUDA starts."""

_NONDETERMINISTIC = "does not have a deterministic implementation"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def determinism_class(device: str) -> DeterminismClass:
    """Describe the class this process runs ``device`` (``cpu``, ``cuda:0``) in."""
    import numpy as np
    import torch

    cuda = device.startswith("cuda")
    return DeterminismClass(
        python=platform.python_version(),
        torch=torch.__version__,
        numpy=np.__version__,
        device_type="cuda" if cuda else "cpu",
        device_name=torch.cuda.get_device_name(torch.device(device)) if cuda else _cpu_name(),
        cpu_capability=str(torch.backends.cpu.get_cpu_capability()),
        cuda=torch.version.cuda if cuda else None,
        cudnn=torch.backends.cudnn.version() if cuda else None,  # type: ignore[no-untyped-call]
        threads=torch.get_num_threads(),
        deterministic_algorithms=torch.are_deterministic_algorithms_enabled(),
        cublas_workspace_config=os.environ.get("CUBLAS_WORKSPACE_CONFIG") if cuda else None,
        allow_tf32=bool(torch.backends.cuda.matmul.allow_tf32) if cuda else False,
    )


def seed_for(bundle_sha: str) -> int:
    """The seed of a task: the first 8 bytes of its bundle's sha256 (a verifier knows it)."""
    return int(bundle_sha[:16], 16) & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), Python's ``random`` and NumPy's global generator."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic_mode() -> Iterator[None]:
    """Deterministic kernels (warn-only), no cuDNN autotuning; the old settings come back after.

    ``CUBLAS_WORKSPACE_CONFIG`` is set when missing: it only takes effect if
    CUDA has not started yet, so the worker enters this mode before any
    tensor reaches the GPU.
    """
    import torch

    saved: dict[str, Any] = {
        "algorithms": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved["algorithms"], warn_only=saved["warn_only"])
        torch.backends.cudnn.deterministic = saved["cudnn_deterministic"]
        torch.backends.cudnn.benchmark = saved["cudnn_benchmark"]


class NondeterminismWatch:
    """Records the ops that warned they have no deterministic kernel; warnings still show."""

    def __init__(self) -> None:
        self.ops: list[str] = []
        self._saved: Any = None

    def __enter__(self) -> NondeterminismWatch:
        self._saved = warnings.showwarning
        original = warnings.showwarning

        def show(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: TextIO | None = None,
            line: str | None = None,
        ) -> None:
            text = str(message)
            if _NONDETERMINISTIC in text:
                op = text.split(_NONDETERMINISTIC, 1)[0].strip()
                if op not in self.ops:
                    self.ops.append(op)
            original(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        warnings.showwarning = self._saved
