"""``%%gensyn_train`` and ``%gensyn``: the notebook's way into the network."""

from __future__ import annotations

import time
from typing import Any

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from ..protocol import CoordinatorError
from ._client import CoordinatorClient
from ._errors import GensynError
from ._network import devnet_command, resolve_network
from ._origin import cell_origin
from ._train import TrainOptions, attach_task, train_cell

__all__ = ["GensynMagics"]


def _say(message: str) -> None:
    print(f"[gensyn] {message}", flush=True)


def _wants_help(line: str) -> bool:
    return any(word in ("-h", "--help") for word in line.split())


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


@magics_class
class GensynMagics(Magics):
    """Magics of gensyn-jupyter; one coordinator client per network, reused."""

    def __init__(self, shell: Any = None) -> None:
        super().__init__(shell)
        self._clients: dict[str, CoordinatorClient] = {}

    def _user_ns(self) -> dict[str, Any]:
        if self.shell is None:
            raise GensynError("%%gensyn_train needs an IPython shell")
        namespace: dict[str, Any] = self.shell.user_ns
        return namespace

    def _client(self, network: str | None) -> CoordinatorClient:
        try:
            url = resolve_network(network, say=_say)
        except (RuntimeError, ValueError, OSError) as exc:
            raise GensynError(f"no network to run on: {exc}") from None
        if url not in self._clients:
            self._clients[url] = CoordinatorClient(base_url=url)
        return self._clients[url]

    @magic_arguments()
    @argument(
        "--gpus",
        type=int,
        default=1,
        help="devices to lease on one provider (default 1); N > 1 runs N ranks of the cell "
        "(torch.distributed: NCCL on CUDA, gloo with N processes on the CPU), with gradients "
        "averaged and input DataLoaders sharded unless the cell sets up DDP itself",
    )
    @argument(
        "--verify",
        choices=["none", "spot", "replicate"],
        default="none",
        help="how the result is checked: none (trusted); spot (verifiers replay a sampled 10%% "
        "of the segments, a cheater is slashed); replicate (a second provider runs it too, "
        "different roots go to the referee; costs twice the compute)",
    )
    @argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="auto: CUDA when the provider has it; cpu: stay on the CPU; cuda: GPU providers only",
    )
    @argument(
        "--network", default=None, help="coordinator URL (default: $GENSYN_NETWORK or devnet)"
    )
    @argument(
        "-o", "--output", default="_gensyn", help="name of the result handle (default _gensyn)"
    )
    @argument("--max-seconds", type=int, default=3600, help="stop the run after this many seconds")
    @argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="K",
        help="optimizer steps between committed checkpoints (default: chosen from the step "
        "count, at most 32 checkpoints; 0: no checkpoint commitment)",
    )
    @argument(
        "--async",
        dest="run_async",
        action="store_true",
        help="return the handle at once; handle.result() waits, handle.apply() loads the results",
    )
    @cell_magic
    def gensyn_train(self, line: str, cell: str) -> None:
        """Run this cell's training loop on a provider of the network.

        The cell's inputs (models, optimizers, tensors, notebook functions)
        are captured and sent; after the run, modules and optimizers are
        updated in place, new values bound, and ``_gensyn`` holds the task.
        """
        if _wants_help(line):
            print(self.gensyn_train.__doc__)
            return
        args = parse_argstring(self.gensyn_train, line)
        if args.verify != "none" and args.checkpoint_every == 0:
            raise GensynError(
                f"--verify {args.verify} compares committed checkpoints: drop --checkpoint-every 0"
            )
        if args.gpus < 1:
            raise GensynError(f"--gpus {args.gpus}: ask for at least 1")
        if args.gpus > 1 and args.verify == "spot":
            raise GensynError(
                f"--verify spot replays one segment in one process, and --gpus {args.gpus} runs "
                "several ranks that talk to each other: use --verify replicate (or none)"
            )
        if args.checkpoint_every is not None and args.checkpoint_every < 0:
            raise GensynError(f"--checkpoint-every {args.checkpoint_every}: use 0 or more steps")
        if not args.output.isidentifier():
            raise GensynError(f"-o {args.output!r} is not a valid Python name")
        notebook, cell_id = cell_origin(self.shell)
        options = TrainOptions(
            gpus=args.gpus,
            verify=args.verify,
            device=args.device,
            output=args.output,
            max_seconds=args.max_seconds,
            run_async=args.run_async,
            checkpoint_every=args.checkpoint_every,
            notebook=notebook,
            cell_id=cell_id,
        )
        from ..capture import PreflightError

        client = self._client(args.network)
        try:
            train_cell(cell, self._user_ns(), options=options, client=client, say=_say)
        except PreflightError as exc:
            raise GensynError(f"nothing was sent: {exc}") from None
        except CoordinatorError as exc:
            raise GensynError(f"the network refused the task: {exc.detail}") from None

    @magic_arguments()
    @argument(
        "command",
        choices=["status", "tasks", "providers", "devnet", "cancel", "attach", "approve"],
        help="status | tasks | providers | devnet up|down|status | cancel TASK_ID | "
        "attach TASK_ID | approve TASK_ID",
    )
    @argument(
        "rest", nargs="*", help="devnet: up, down or status; cancel, attach, approve: the task id"
    )
    @argument("--wait", action="store_true", help="attach: wait for the end and load the results")
    @argument("-o", "--output", default="_gensyn", help="attach: name of the handle (_gensyn)")
    @argument(
        "--network", default=None, help="coordinator URL (default: $GENSYN_NETWORK or devnet)"
    )
    @line_magic
    def gensyn(self, line: str) -> None:
        """Inspect and control the network: status, tasks, providers, devnet, cancel."""
        if _wants_help(line):
            print(self.gensyn.__doc__)
            return
        args = parse_argstring(self.gensyn, line)
        try:
            self._command(args)
        except CoordinatorError as exc:
            raise GensynError(exc.detail) from None

    def _command(self, args: Any) -> None:
        command: str = args.command
        rest: list[str] = args.rest
        if command == "devnet":
            action = rest[0] if rest else "status"
            if action not in ("up", "down", "status"):
                raise GensynError(f"%gensyn devnet {action}: use up, down or status")
            try:
                out = devnet_command(action, *(["--detach"] if action == "up" else []))
            except RuntimeError as exc:
                raise GensynError(str(exc)) from None
            print(out)
            return
        client = self._client(args.network)
        if command == "approve":
            # The kernel holds no key and never signs: say where approval happens.
            task_id = rest[0] if rest else "TASK_ID"
            print(
                f"approve {task_id} outside the kernel: in the Gensyn panel (JupyterLab's left "
                f"sidebar), or in a terminal with your key in its environment:\n"
                f"  gensyn approve {task_id} --network {client.base_url}"
            )
            return
        if command == "attach":
            if not rest:
                raise GensynError("%gensyn attach needs a task id (see %gensyn tasks)")
            attach_task(
                rest[0],
                self._user_ns(),
                client=client,
                output=args.output,
                wait=args.wait,
                say=_say,
            )
        elif command == "status":
            health = client.health()
            print(
                f"network {client.base_url}: {health.get('status')}, "
                f"{health.get('providers_online')} providers online, {health.get('tasks')} tasks"
            )
        elif command == "tasks":
            now = time.time()
            rows = [
                [
                    t.id,
                    t.state,
                    t.provider_name or "-",
                    f"{t.gpu_seconds:.1f}",
                    f"{now - t.created_at:.0f} s ago",
                ]
                for t in client.list_tasks(limit=20)
            ]
            print(
                _table(rows, ["task", "state", "provider", "gpu-s", "created"])
                if rows
                else "no tasks yet"
            )
        elif command == "providers":
            rows = [
                [
                    p.id,
                    p.info.name,
                    p.state,
                    p.info.device_type,
                    ", ".join(g.name for g in p.info.gpus) or f"{p.info.cpu_count} cpu cores",
                    str(p.tasks_done),
                ]
                for p in client.list_providers()
            ]
            print(
                _table(rows, ["provider", "name", "state", "device", "hardware", "tasks"])
                if rows
                else "no providers registered"
            )
        elif command == "cancel":
            if not rest:
                raise GensynError("%gensyn cancel needs a task id")
            task = client.cancel(rest[0])
            print(f"task {task.id}: {task.state}")
