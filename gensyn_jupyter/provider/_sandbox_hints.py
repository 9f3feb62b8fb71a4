"""Notes added to a cell's error when it is what a limit of the provider's sandbox does."""

from __future__ import annotations

from ..protocol import RemoteError
from ._sandbox import Sandbox, human_size

__all__ = ["explain"]

_HINTS: list[tuple[tuple[str, ...], str, str]] = [
    # (what the error says, the limit or ability it needs, the note)
    (
        ("MemoryError", "can't allocate memory", "Cannot allocate memory"),
        "memory",
        "the provider's sandbox caps the worker's memory at {} (RLIMIT_DATA): "
        "use less memory, or a provider with a larger cap",
    ),
    (
        ("File too large", "[Errno 27]"),
        "file_size",
        "the provider's sandbox limits any file a cell writes to {} (RLIMIT_FSIZE)",
    ),
    (
        ("Resource temporarily unavailable", "can't start new thread"),
        "processes",
        "the provider's sandbox allows a worker {} processes and threads (RLIMIT_NPROC)",
    ),
    (
        ("killed by signal 24",),
        "cpu_seconds",
        "the provider's sandbox allows a worker {} s of CPU time (RLIMIT_CPU)",
    ),
    (
        ("Too many open files",),
        "open_files",
        "the provider's sandbox allows a worker {} open files (RLIMIT_NOFILE)",
    ),
    (
        (
            "Network is unreachable",
            "Connection refused",
            "name resolution",
            "Name or service not known",
            "No address associated",
        ),
        "network",
        "cells run without network in the provider's sandbox: pass data in as "
        "variables of the notebook, they travel with the cell",
    ),
    (
        ("PermissionError", "Permission denied", "Operation not permitted"),
        "user",
        "cells run as an unprivileged user in the provider's sandbox: they may write only "
        "the task's directory, $HOME and $TMPDIR, and read no file of the provider",
    ),
]


def explain(error: RemoteError, sandbox: Sandbox | None) -> RemoteError:
    """``error`` with a note when it is what one of the sandbox's limits does."""
    if sandbox is None or not sandbox.policy.enabled:
        return error
    text = f"{error.type}: {error.message}"
    values: dict[str, str] = {
        key: human_size(value) if key in ("memory", "file_size") else str(value)
        for key, value in sandbox.limits().items()
    }
    if sandbox.abilities.network:
        values["network"] = ""
    if sandbox.abilities.user:
        values["user"] = ""
    for needles, needs, note in _HINTS:
        if needs in values and any(needle in text for needle in needles):
            message = f"{error.message} ({note.format(values[needs])})"
            return error.model_copy(update={"message": message})
    return error
