"""The kernel side: magics, the coordinator client, the result handle.

Reaches the coordinator only over HTTP; holds no key and signs nothing.
"""

from ._client import CoordinatorClient
from ._errors import GensynError, RemoteTaskError
from ._handle import TrainResult
from ._magics import GensynMagics
from ._train import TrainOptions, train_cell

__all__ = [
    "CoordinatorClient",
    "GensynError",
    "GensynMagics",
    "RemoteTaskError",
    "TrainOptions",
    "TrainResult",
    "train_cell",
]
