"""``gensyn provider``: offers this machine's GPU (or CPU) to a coordinator."""

from ._daemon import run_provider
from ._hardware import detect_hardware

__all__ = ["detect_hardware", "run_provider"]
