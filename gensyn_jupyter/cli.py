"""The ``gensyn`` command: wires the parts together, holds no logic of its own."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from .config import devnet_dir

if TYPE_CHECKING:
    from .chain import BudgetPolicy

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gensyn", description="Verified training on pooled GPUs, from a notebook."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    devnet = sub.add_parser("devnet", help="a local network: coordinator + providers on loopback")
    devnet.add_argument("action", choices=["up", "down", "status", "faucet"])
    devnet.add_argument("address", nargs="?", help="faucet: the address to fund")
    devnet.add_argument(
        "--chain",
        choices=["auto", "anvil", "embedded", "none"],
        default="auto",
        help="escrow chain: anvil when installed, else the embedded node (default); "
        "'none' runs a free network",
    )
    devnet.add_argument("--providers", type=int, default=2, help="providers to start (default 2)")
    devnet.add_argument(
        "--port", type=int, default=0, help="coordinator port (default: a free one)"
    )
    devnet.add_argument("--detach", action="store_true", help="run in the background")
    devnet.add_argument(
        "--challenge-window",
        type=int,
        default=1,
        help="seconds a committed result may be challenged (default 1; spot checks that "
        "should slash a cheater need longer than a replay takes, e.g. 30)",
    )
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
        "--db",
        default=None,
        metavar="URL",
        help="database URL, e.g. postgresql+psycopg://USER:PASSWORD@HOST:5432/gensyn for "
        "several replicas on one database (default: SQLite in --data-dir); blobs stay in "
        "--data-dir, so replicas need one shared blob directory (docs/operations.md)",
    )
    coord.add_argument(
        "--migrate",
        action="store_true",
        help="upgrade the database schema to this version's newest revision (Alembic) and exit",
    )
    coord.add_argument(
        "--lease-ttl",
        type=float,
        default=15.0,
        help="seconds without a heartbeat before a provider loses its lease",
    )
    coord.add_argument(
        "--log-json",
        action="store_true",
        help="log one JSON object per line on stderr (each request with its task/lease id)",
    )
    coord.add_argument(
        "--drain-seconds",
        type=float,
        default=5.0,
        help="on SIGTERM: hand out no more leases and wait this long for requests in flight",
    )
    coord.add_argument(
        "--requests-per-second",
        type=float,
        default=200.0,
        help="requests per second per caller (bearer token, else IP) before 429; 0 turns the "
        "limit off",
    )
    coord.add_argument("--burst", type=int, default=1000, help="requests a caller may burst")
    coord.add_argument(  # task reads are owner-only now; the old switch is accepted
        "--private-tasks", action="store_true", help=argparse.SUPPRESS
    )
    coord.add_argument("--rpc", default=None, help="JSON-RPC URL of the chain (escrow on)")
    coord.add_argument("--market", default=None, help="address of the deployed TaskMarket")
    coord.add_argument(
        "--rate-wei", type=int, default=10**12, help="price of one GPU-second in wei"
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
    prov.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="on SIGTERM: seconds to let the running task finish before it is stopped "
        "and handed back as failed (default 30)",
    )
    box = prov.add_argument_group(
        "sandbox",
        "each worker runs the cell as its own unprivileged uid, without network, with a "
        "private home and TMPDIR and these limits (docs/sandbox.md). Without root, or where "
        "namespaces are refused, it does what it can and the provider's log says what is "
        "missing",
    )
    box.add_argument(
        "--no-sandbox",
        action="store_true",
        help="development only: cells run as this user, with its files and network",
    )
    box.add_argument(
        "--memory-limit",
        default=None,
        metavar="SIZE",
        help="memory per worker, RLIMIT_DATA (e.g. 8G, 'none'; default 3/4 of the RAM)",
    )
    box.add_argument(
        "--max-file-size",
        default="16G",
        metavar="SIZE",
        help="largest file a cell may write (default 16G)",
    )
    box.add_argument(
        "--max-procs",
        type=int,
        default=1024,
        metavar="N",
        help="processes + threads per worker (default 1024)",
    )
    box.add_argument(
        "--max-open-files",
        type=int,
        default=8192,
        metavar="N",
        help="open files per worker (default 8192)",
    )
    box.add_argument(
        "--cpu-time",
        type=int,
        default=None,
        metavar="S",
        help="CPU seconds per worker (default: no limit)",
    )
    box.add_argument(
        "--tmp-size",
        default="1G",
        metavar="SIZE",
        help="private home + TMPDIR (tmpfs) per worker (default 1G)",
    )
    prov.add_argument(
        "--referee",
        action="store_true",
        help="take only referee jobs: re-execute challenged segments and rule on chain "
        "(the key must be the market's referee)",
    )
    prov.add_argument(
        "--cheat",
        choices=["skip", "perturb", "fake-loss", "stale", "wrong-data"],
        default=None,
        help="tests and demos only: run every task dishonestly (verification must catch it)",
    )
    wallet = sub.add_parser(
        "wallet",
        help="the encrypted keystore (scrypt) in the Jupyter data dir: create, import, list",
    )
    wallet.add_argument("action", choices=["create", "import", "list"])
    wallet.add_argument(
        "--keystore-dir",
        type=Path,
        default=None,
        help="default: $GENSYN_KEYSTORE_DIR or <jupyter data dir>/gensyn/keystore",
    )

    approve = sub.add_parser(
        "approve",
        help="approve one task by hand: fund its escrow and sign its order "
        "(key from GENSYN_PRIVATE_KEY or GENSYN_KEYSTORE + GENSYN_PASSPHRASE)",
    )
    approve.add_argument("task_id")
    approve.add_argument("--network", required=True, help="coordinator URL")

    signer = sub.add_parser(
        "signer",
        help="approve and fund your tasks within a budget (key from GENSYN_PRIVATE_KEY "
        "or GENSYN_KEYSTORE + GENSYN_PASSPHRASE)",
    )
    signer.add_argument("--network", required=True, help="coordinator URL")
    signer.add_argument(
        "--budget",
        default="off",
        help="'devnet' (1 ETH a task, 10 a day), 'off' (default: nothing signed unasked), "
        "or 'TASK_ETH/DAY_ETH' such as 0.05/1",
    )
    verify = sub.add_parser(
        "verify",
        help="check a task's receipt independently: root, verdict signatures, output hash, "
        "and the commit and outcome on chain",
    )
    verify.add_argument("receipt", type=Path, help="receipt JSON (handle.save_receipt(path))")
    verify.add_argument("--rpc", default=None, help="JSON-RPC URL (default: the receipt's)")
    verify.add_argument(
        "--tensors", type=Path, default=None, help="the returned weights (safetensors) to hash"
    )
    bench = sub.add_parser(
        "bench",
        help="run the benchmarks of a source checkout (python -m benchmarks): "
        "--quick for CI, --only NAME ...",
    )
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="--quick, --only NAME ...")
    return parser


def _bench(bench_args: list[str]) -> int:
    """``python -m benchmarks`` of the checkout this package runs from."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "benchmarks" / "__main__.py").is_file():
        print(
            "gensyn bench: the benchmarks live in the source repository (benchmarks/ is "
            "not part of the wheel): run it from a checkout installed with `make install`",
            file=sys.stderr,
        )
        return 2
    command = [sys.executable, "-m", "benchmarks", *bench_args]
    return subprocess.run(command, cwd=root, check=False).returncode


def _budget(text: str) -> BudgetPolicy:
    from .chain import BudgetPolicy

    if text == "devnet":
        return BudgetPolicy.devnet()
    if text == "off":
        return BudgetPolicy.off()
    try:
        task, day = (int(Decimal(part) * 10**18) for part in text.split("/"))
    except (ValueError, ArithmeticError):
        raise SystemExit(
            f"gensyn signer: --budget {text!r}: use devnet, off or TASK_ETH/DAY_ETH"
        ) from None
    return BudgetPolicy(enabled=True, per_task_wei=task, per_day_wei=day)


def _approve(args: argparse.Namespace) -> int:
    from .chain import (
        BudgetLedger,
        BudgetPolicy,
        MarketError,
        Signer,
        SignerConfigError,
        account_from_env,
    )
    from .config import gensyn_home
    from .protocol import CoordinatorError, format_eth

    try:
        account = account_from_env()
    except SignerConfigError as exc:
        print(f"gensyn approve: {exc}", file=sys.stderr)
        return 2
    ledger = BudgetLedger(path=gensyn_home() / "budget.json", policy=BudgetPolicy.off())
    signer = Signer(network=args.network, account=account, ledger=ledger)
    try:
        signer.connect(timeout=10)
        signer.sign_in(store=False)  # the kernel keeps its own session
        task = signer.approve(args.task_id)
    except (ValueError, CoordinatorError, MarketError, RuntimeError) as exc:
        print(f"gensyn approve: {exc}", file=sys.stderr)
        return 1
    finally:
        signer.close()
    total = task.payment.order.total_wei if task.payment else 0
    print(f"approved {task.id}: {format_eth(total)} in escrow; it is {task.state.value}")
    return 0


def _signer(args: argparse.Namespace) -> int:
    import signal
    import threading

    from .chain import BudgetLedger, Signer, SignerConfigError, account_from_env
    from .config import gensyn_home

    try:
        account = account_from_env()
    except SignerConfigError as exc:
        print(f"gensyn signer: {exc}", file=sys.stderr)
        return 2
    ledger = BudgetLedger(path=gensyn_home() / "budget.json", policy=_budget(args.budget))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signer = Signer(
        network=args.network,
        account=account,
        ledger=ledger,
        log=lambda message: print(f"[signer] {message}", file=sys.stderr, flush=True),
    )
    try:
        signer.run(stop)
    finally:
        signer.close()
    return 0


def _secret(prompt: str, env: str) -> str:
    """A secret from ``$env`` (headless) or typed at a prompt; never from the command line."""
    import getpass

    value = os.environ.get(env)
    if value is not None:
        return value
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    return getpass.getpass(prompt)


def _wallet(args: argparse.Namespace) -> int:
    from .chain import Keystore, KeystoreError, default_keystore_dir

    keystore = Keystore(directory=args.keystore_dir or default_keystore_dir())
    try:
        if args.action == "list":
            found = keystore.addresses()
            print("\n".join(found) if found else f"no keys in {keystore.directory}")
            return 0
        if args.action == "import":
            key = _secret("private key (hex, not echoed): ", "GENSYN_IMPORT_KEY")
            address = keystore.import_key(key, _secret("passphrase: ", "GENSYN_PASSPHRASE"))
        else:
            passphrase = _secret("passphrase (8 characters or more): ", "GENSYN_PASSPHRASE")
            address = keystore.create(passphrase)
    except KeystoreError as exc:
        print(f"gensyn wallet {args.action}: {exc}", file=sys.stderr)
        return 1
    print(f"{address} stored encrypted in {keystore.directory}")
    return 0


def _devnet(args: argparse.Namespace) -> int:
    from .devnet import devnet_status, run_devnet, start_detached, stop_devnet

    data_dir: Path = args.data_dir or devnet_dir()
    if args.action == "faucet":
        from .devnet import devnet_faucet

        if not args.address:
            print("gensyn devnet faucet: name the address to fund", file=sys.stderr)
            return 2
        try:
            print(devnet_faucet(data_dir=data_dir, address=args.address))
        except RuntimeError as exc:
            print(f"gensyn devnet faucet: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.action == "up" and args.detach:
        try:
            state, started = start_detached(
                data_dir=data_dir,
                port=args.port,
                providers=args.providers,
                lease_ttl=args.lease_ttl,
                chain=args.chain,
                challenge_window=args.challenge_window,
            )
        except RuntimeError as exc:
            print(f"gensyn devnet up: {exc}", file=sys.stderr)
            return 1
        verb = "started" if started else "already running"
        print(f"devnet {verb} at {state.url} ({state.providers} providers, pid {state.pid})")
        return 0
    if args.action == "up":
        return run_devnet(
            data_dir=data_dir,
            port=args.port,
            providers=args.providers,
            lease_ttl=args.lease_ttl,
            chain=args.chain,
            challenge_window=args.challenge_window,
        )
    if args.action == "down":
        print("devnet stopped" if stop_devnet(data_dir=data_dir) else "no devnet was running")
        return 0
    print(devnet_status(data_dir=data_dir))
    return 0


def _verify_receipt(args: argparse.Namespace) -> int:
    """``gensyn verify receipt.json``: print every check; exit 1 when one fails."""
    from pydantic import ValidationError

    from .chain import check_receipt_onchain
    from .protocol import Receipt
    from .verify import check_receipt

    try:
        receipt = Receipt.model_validate_json(args.receipt.read_text())
    except (OSError, ValidationError) as exc:
        print(f"gensyn verify: {args.receipt} is not a readable receipt: {exc}", file=sys.stderr)
        return 2
    tensors = args.tensors.read_bytes() if args.tensors is not None else None
    checks = [(c.name, c.ok, c.detail) for c in check_receipt(receipt, tensors=tensors)]
    if receipt.task_key is not None:
        try:
            checks += check_receipt_onchain(receipt, args.rpc)
        except Exception as exc:  # an unreachable node is a failed check, said plainly
            checks.append(("on chain", False, f"could not read the chain: {exc}"))
    for name, ok, detail in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    failed = sum(1 for _name, ok, _detail in checks if not ok)
    print(f"{receipt.task_id}: {len(checks) - failed} of {len(checks)} checks hold")
    return 1 if failed else 0


def _migrate(url: str) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from .coordinator import migrate

    try:
        before, after = migrate(url)
    except (SQLAlchemyError, ValueError) as exc:
        print(f"gensyn coordinator --migrate: {exc}", file=sys.stderr)
        return 1
    if before == after:
        print(f"the database is up to date (schema revision {after})")
    else:
        print(f"the database schema was upgraded from {before or 'none'} to revision {after}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gensyn`` command."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # everything after it is the benchmarks' own options
        return _bench(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "devnet":
        return _devnet(args)
    if args.command == "signer":
        return _signer(args)
    if args.command == "approve":
        return _approve(args)
    if args.command == "wallet":
        return _wallet(args)
    if args.command == "verify":
        return _verify_receipt(args)
    if args.command == "coordinator" and (args.db or "").startswith("postgres://"):
        print(
            "gensyn coordinator: --db: write postgresql+psycopg://USER:PASSWORD@HOST:PORT/DBNAME "
            "(SQLAlchemy's spelling; 'postgres://' is not understood)",
            file=sys.stderr,
        )
        return 2
    if args.command == "coordinator" and args.migrate:
        return _migrate(args.db or f"sqlite:///{args.data_dir / 'coordinator.sqlite'}")
    if args.command == "coordinator":
        from .coordinator import ChainConfig, RateLimit, serve

        chain = None
        if args.rpc or args.market:
            key = os.environ.get("GENSYN_OPERATOR_KEY", "")
            if not (args.rpc and args.market and key):
                print(
                    "gensyn coordinator: escrow needs --rpc, --market and the operator key "
                    "in GENSYN_OPERATOR_KEY",
                    file=sys.stderr,
                )
                return 2
            chain = ChainConfig(
                rpc_url=args.rpc,
                market=args.market,
                operator_key=key,
                rate_wei_per_gpu_second=args.rate_wei,
                faucet_key=os.environ.get("GENSYN_FAUCET_KEY") or None,
            )
        rate_limit = None
        if args.requests_per_second != 0:
            try:
                rate_limit = RateLimit(per_second=args.requests_per_second, burst=args.burst)
            except ValueError as exc:
                print(f"gensyn coordinator: --requests-per-second/--burst: {exc}", file=sys.stderr)
                return 2
        serve(
            chain=chain,
            host=args.host,
            port=args.port,
            data_dir=args.data_dir,
            database_url=args.db,
            lease_ttl_seconds=args.lease_ttl,
            heartbeat_seconds=min(2.0, args.lease_ttl / 4),
            log_json=args.log_json,
            drain_seconds=args.drain_seconds,
            rate_limit=rate_limit,
        )
        return 0
    from .config import gensyn_home
    from .provider import run_provider, sandbox_policy

    try:
        sandbox = sandbox_policy(
            enabled=not args.no_sandbox,
            memory=args.memory_limit,
            file_size=args.max_file_size,
            processes=args.max_procs,
            open_files=args.max_open_files,
            cpu_seconds=args.cpu_time,
            tmp_size=args.tmp_size,
        )
    except ValueError as exc:
        print(f"gensyn provider: {exc}", file=sys.stderr)
        return 2
    account = None
    if os.environ.get("GENSYN_PRIVATE_KEY") or os.environ.get("GENSYN_KEYSTORE"):
        from .chain import SignerConfigError, account_from_env

        try:
            account = account_from_env()
        except SignerConfigError as exc:
            print(f"gensyn provider: {exc}", file=sys.stderr)
            return 2
    run_provider(
        account=account,
        coordinator=args.coordinator,
        work_dir=args.work_dir or gensyn_home() / "provider",
        name=args.name,
        device=args.device,
        threads=args.threads,
        cheat=args.cheat,
        referee=args.referee,
        grace_seconds=args.grace,
        sandbox=sandbox,
    )
    return 0
