"""The kernel side: magics, the coordinator client, the result handle.

Reaches the coordinator only over HTTP; holds no key and signs nothing. The
magics import IPython, so they load lazily: ``train_cell`` works without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._client import CoordinatorClient
from ._errors import GensynError, RemoteTaskError
from ._handle import TaskHandle, View
from ._train import TrainOptions, attach_task, train_cell

if TYPE_CHECKING:
    from ._magics import GensynMagics

__all__ = [
    "CoordinatorClient",
    "GensynError",
    "GensynMagics",
    "RemoteTaskError",
    "TaskHandle",
    "TrainOptions",
    "View",
    "attach_task",
    "train_cell",
]


def __getattr__(name: str) -> Any:
    if name == "GensynMagics":
        from ._magics import GensynMagics

        return GensynMagics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
