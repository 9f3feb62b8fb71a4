"""What this machine offers: CUDA devices when torch sees them, else the CPU."""

from __future__ import annotations

import os
import platform
import socket
from typing import Literal

import psutil

from ..protocol import GpuInfo, ProviderInfo

__all__ = ["detect_hardware"]


def detect_hardware(
    *, name: str | None = None, device: Literal["auto", "cpu", "cuda"] = "auto"
) -> ProviderInfo:
    """Describe this machine for ``POST /v1/providers``.

    Parameters
    ----------
    name
        Provider name shown to users; defaults to the host name.
    device
        ``auto`` offers CUDA when torch sees a GPU, ``cpu`` never does,
        ``cuda`` insists (``RuntimeError`` when there is none).
    """
    import torch

    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device here")
    use_cuda = has_cuda and device != "cpu"
    gpus: list[GpuInfo] = []
    if use_cuda:
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append(GpuInfo(name=props.name, memory_bytes=int(props.total_memory)))
    return ProviderInfo(
        name=name or socket.gethostname(),
        device_type="cuda" if use_cuda else "cpu",
        gpus=gpus,
        cpu_count=os.cpu_count() or 1,
        memory_bytes=int(psutil.virtual_memory().total),
        python=platform.python_version(),
        torch=str(torch.__version__),
    )
