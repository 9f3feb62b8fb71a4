"""The ``gensyn`` command: wires the parts together, holds no logic of its own."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import devnet_dir

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gensyn", description="Verified training on pooled GPUs, from a notebook."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    devnet = sub.add_parser("devnet", help="a local network: coordinator + providers on loopback")
    devnet.add_argument("action", choices=["up", "down", "status"])
    devnet.add_argument("--providers", type=int, default=2, help="providers to start (default 2)")
    devnet.add_argument(
        "--port", type=int, default=0, help="coordinator port (default: a free one)"
    )
    devnet.add_argument("--detach", action="store_true", help="run in the background")
    devnet.add_argument(
        "--lease-ttl",
        type=float,
        default=15.0,
        help="seconds without a heartbeat before a provider loses its lease",
    )
    devnet.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="state directory (default ~/.gensyn/devnet, or $GENSYN_HOME/devnet)",
    )

    coord = sub.add_parser("coordinator", help="run a coordinator")
    coord.add_argument("--host", default="127.0.0.1")
    coord.add_argument("--port", type=int, default=8765)
    coord.add_argument("--data-dir", type=Path, required=True)
    coord.add_argument(
        "--lease-ttl",
        type=float,
        default=15.0,
        help="seconds without a heartbeat before a provider loses its lease",
    )

    prov = sub.add_parser("provider", help="offer this machine to a coordinator")
    prov.add_argument("--coordinator", required=True, help="coordinator URL")
    prov.add_argument("--name", default=None, help="name shown to users (default: host name)")
    prov.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    prov.add_argument("--threads", type=int, default=None, help="torch threads per worker")
    prov.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="blob cache and task directories (default ~/.gensyn/provider)",
    )
    return parser


def _devnet(args: argparse.Namespace) -> int:
    from .devnet import devnet_status, run_devnet, start_detached, stop_devnet

    data_dir: Path = args.data_dir or devnet_dir()
    if args.action == "up" and args.detach:
        try:
            state, started = start_detached(
                data_dir=data_dir,
                port=args.port,
                providers=args.providers,
                lease_ttl=args.lease_ttl,
            )
        except RuntimeError as exc:
            print(f"gensyn devnet up: {exc}", file=sys.stderr)
            return 1
        verb = "started" if started else "already running"
        print(f"devnet {verb} at {state.url} ({state.providers} providers, pid {state.pid})")
        return 0
    if args.action == "up":
        return run_devnet(
            data_dir=data_dir, port=args.port, providers=args.providers, lease_ttl=args.lease_ttl
        )
    if args.action == "down":
        print("devnet stopped" if stop_devnet(data_dir=data_dir) else "no devnet was running")
        return 0
    print(devnet_status(data_dir=data_dir))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gensyn`` command."""
    args = _parser().parse_args(argv)
    if args.command == "devnet":
        return _devnet(args)
    if args.command == "coordinator":
        from .coordinator import serve

        serve(
            host=args.host,
            port=args.port,
            data_dir=args.data_dir,
            lease_ttl_seconds=args.lease_ttl,
            heartbeat_seconds=min(2.0, args.lease_ttl / 4),
        )
        return 0
    from .config import gensyn_home
    from .provider import run_provider

    run_provider(
        coordinator=args.coordinator,
        work_dir=args.work_dir or gensyn_home() / "provider",
        name=args.name,
        device=args.device,
        threads=args.threads,
    )
    return 0
