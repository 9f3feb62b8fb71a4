"""The provider's sandbox: hostile cells are stopped, told why, and the provider serves on.

A real coordinator and a real provider (``gensyn provider`` with small limits)
on loopback, driven from a real kernel; the provider's key is in its
environment and in a file only root can read.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import psutil
import pytest

from gensyn_jupyter.cli import main
from gensyn_jupyter.provider import sandbox_policy
from gensyn_jupyter.provider._pool import WorkerPool, worker_environment
from gensyn_jupyter.provider._sandbox import Sandbox, SandboxPolicy, parse_size

from ..e2e._faults import Proc, free_port, start_coordinator, start_provider, wait_for_provider
from ..e2e._kernel import CellRun, Kernel, started_kernel

_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
_KEY_FILE_TEXT = "provider-secret-in-a-file"
_UID_BASE = 1_500_000_000
_root_only = pytest.mark.skipif(
    os.geteuid() != 0, reason="the full sandbox needs root (CI runs as root)"
)


class _Net:
    def __init__(self, url: str, port: int, provider: Proc, key_file: Path) -> None:
        self.url, self.port, self.provider, self.key_file = url, port, provider, key_file


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Net]:
    base = tmp_path_factory.mktemp("sandbox")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    coordinator = start_coordinator(base / "coordinator", port)
    key_file = base / "provider.key"
    key_file.write_text(_KEY_FILE_TEXT)
    key_file.chmod(0o600)
    limits = ("--memory-limit", "1G", "--max-file-size", "10M", "--max-procs", "64")
    with mock.patch.dict(os.environ, {"GENSYN_PRIVATE_KEY": _KEY}):
        provider = start_provider(url, base / "provider", "boxed", extra=limits)
    try:
        wait_for_provider(url, "boxed", timeout=120)
        yield _Net(url, port, provider, key_file)
    finally:
        provider.stop()
        coordinator.stop()


@pytest.fixture(scope="module")
def kernel(net: _Net, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    home = tmp_path_factory.mktemp("sandbox-kernel")
    with started_kernel({"GENSYN_HOME": str(home), "GENSYN_NETWORK": net.url}) as k:
        setup = k.run("%load_ext gensyn_jupyter\nimport torch")
        assert setup.status == "ok", setup.text
        yield k


def _refused(kernel: Kernel, cell: str) -> tuple[CellRun, str]:
    run = kernel.run("%%gensyn_train\n" + cell, timeout=120)
    assert run.status == "error", run.text
    rendered = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(run.error))
    # and the provider keeps serving: the next task runs
    # (a module the worker had not imported yet: the Python install is reachable)
    after = kernel.run(
        "%%gensyn_train\nimport wave\nafter = int(torch.ones(3).sum())\n", timeout=120
    )
    assert after.status == "ok", after.text
    assert kernel.run("print(after)").stdout.strip() == "3"
    return run, rendered


@_root_only
def test_the_provider_log_says_the_sandbox_is_complete(net: _Net) -> None:
    log = net.provider.output
    assert "sandbox on: limits memory 1 GiB, file_size 10 MiB" in log
    assert "own uid, no network, private home and TMPDIR per worker" in log
    assert "degraded" not in log


@_root_only
def test_a_cell_reads_neither_the_key_file_nor_the_provider_environment(
    kernel: Kernel, net: _Net
) -> None:
    run, rendered = _refused(
        kernel,
        "import os\n"
        "print('secrets:', sorted(k for k in os.environ if k.startswith('GENSYN')))\n"
        "print('uid:', os.getuid())\n"
        "try:\n"
        f"    open('/proc/{net.provider.proc.pid}/environ', 'rb').read()\n"
        "except OSError as exc:\n"
        "    print('provider environ:', type(exc).__name__)\n"
        f"key = open({str(net.key_file)!r}).read()\n",
    )
    assert "secrets: []" in run.stdout
    assert "provider environ: PermissionError" in run.stdout
    uid = int(run.stdout.split("uid:")[1].split()[0])
    assert uid != 0
    assert "PermissionError" in rendered and "Cell line 9" in rendered
    assert "cells run as an unprivileged user in the provider's sandbox" in rendered
    assert _KEY_FILE_TEXT not in run.text and _KEY[2:] not in run.text


@_root_only
def test_a_cell_has_no_network_not_even_to_the_coordinator(kernel: Kernel, net: _Net) -> None:
    run, rendered = _refused(
        kernel,
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {net.port}), timeout=5)\n"
        "except OSError as exc:\n"
        "    print('coordinator:', type(exc).__name__)\n"
        "socket.create_connection(('10.255.255.1', 80), timeout=5)\n",
    )
    assert "coordinator: ConnectionRefusedError" in run.stdout
    assert "Network is unreachable" in rendered
    assert "cells run without network in the provider's sandbox" in rendered


def _sandbox_processes(provider_pid: int) -> list[int]:
    low = _UID_BASE + provider_pid * 64
    return [
        p.pid
        for p in psutil.process_iter(["uids"])
        if p.info["uids"] is not None and low <= p.info["uids"].real < low + 64
    ]


@_root_only
def test_a_fork_bomb_hits_the_process_limit_and_nothing_of_it_survives(
    kernel: Kernel, net: _Net
) -> None:
    _run, rendered = _refused(
        kernel,
        "import os, time\n"
        "main = os.getpid()\n"
        "try:\n"
        "    while True:\n"
        "        os.fork()\n"
        "except BlockingIOError:\n"
        "    if os.getpid() != main:\n"
        "        time.sleep(3600)  # the bomb's children hold on to their slots\n"
        "    raise\n",
    )
    assert "BlockingIOError" in rendered
    assert "allows a worker 64 processes and threads (RLIMIT_NPROC)" in rendered
    # what is left of the sandbox's uids: the warm spare workers (2), no bomb
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(_sandbox_processes(net.provider.proc.pid)) > 2:
        time.sleep(0.1)
    assert len(_sandbox_processes(net.provider.proc.pid)) <= 2


@_root_only
def test_a_file_beyond_the_size_limit_is_refused(kernel: Kernel) -> None:
    _run, rendered = _refused(
        kernel,
        "with open('big.bin', 'wb') as f:\n"
        "    for _ in range(64):\n"
        "        f.write(b'x' * (1 << 20))\n",
    )
    assert "File too large" in rendered
    assert "limits any file a cell writes to 10 MiB (RLIMIT_FSIZE)" in rendered


@_root_only
def test_memory_beyond_the_cap_is_refused(kernel: Kernel) -> None:
    _run, rendered = _refused(kernel, "big = torch.ones(1 << 30)\n")
    assert "can't allocate memory" in rendered
    assert "caps the worker's memory at 1 GiB (RLIMIT_DATA)" in rendered


@_root_only
@pytest.mark.parametrize("fork", [True, False], ids=["forked", "cold"])
def test_a_worker_process_is_confined_before_it_takes_a_job(tmp_path: Path, fork: bool) -> None:
    work_dir = tmp_path / "provider"
    notes: list[str] = []
    sandbox = Sandbox(SandboxPolicy(processes=128), work_dir=work_dir, log=notes.append)
    with mock.patch.dict(os.environ, {"GENSYN_PRIVATE_KEY": _KEY}):
        env = worker_environment(home=work_dir / "home", threads=1)
    pool = WorkerPool(env=env, cwd=work_dir, size=1, fork=fork, sandbox=sandbox)
    try:
        worker = pool.take(timeout=120)
        proc = psutil.Process(worker.proc.pid)
        assert proc.uids().real == worker.uid and worker.uid is not None and worker.uid > 0
        assert os.getsid(proc.pid) == proc.pid
        assert os.readlink(f"/proc/{proc.pid}/ns/net") != os.readlink("/proc/self/ns/net")
        assert os.readlink(f"/proc/{proc.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        assert re.search(r"Max processes\s+128\s+128", limits), limits
        assert re.search(rf"Max file size\s+{16 << 30}\s", limits), limits
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
        assert b"GENSYN_" not in environ
        if not fork:  # a fork's /proc environ is its server's; its os.environ is what counts
            assert b"HOME=/tmp/gensyn-sandbox/home" in environ
    finally:
        pool.close()


def test_sizes_and_bad_options_are_explained(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_size("512M") == 512 << 20
    assert parse_size("4G") == 4 << 30
    assert parse_size("none") is None
    with pytest.raises(ValueError, match="'lots' is not a size"):
        parse_size("lots")
    with pytest.raises(ValueError, match="--max-procs 4 is too few"):
        sandbox_policy(processes=4)
    args = ["provider", "--coordinator", "http://127.0.0.1:9", "--memory-limit", "lots"]
    assert main(args) == 2
    assert "--memory-limit: 'lots' is not a size" in capsys.readouterr().err
