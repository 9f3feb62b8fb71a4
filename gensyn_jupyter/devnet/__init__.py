"""The local devnet: a coordinator and providers on loopback, for prototyping."""

from ._control import devnet_faucet, devnet_status, start_detached, stop_devnet
from ._supervisor import free_port, run_devnet

__all__ = [
    "devnet_faucet",
    "devnet_status",
    "free_port",
    "run_devnet",
    "start_detached",
    "stop_devnet",
]
