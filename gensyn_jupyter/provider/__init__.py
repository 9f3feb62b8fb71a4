"""``gensyn provider``: offers this machine's GPU (or CPU) to a coordinator."""

from ._cheats import CHEAT_MODES
from ._daemon import run_provider
from ._hardware import detect_hardware
from ._sandbox import SandboxPolicy, sandbox_policy

__all__ = ["CHEAT_MODES", "SandboxPolicy", "detect_hardware", "run_provider", "sandbox_policy"]
