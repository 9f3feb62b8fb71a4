"""Which ops reproduce bit for bit on this machine's CPU, and under which change they do not.

Each op runs forward and backward on seeded inputs, with deterministic
algorithms on (warn-only, as the worker runs); its outputs and input
gradients are hashed (the state hash's canonical encoding). Compared: the same
process twice, a second process with the same thread count, and a process
with another thread count. An op that warns that it has no deterministic
kernel is named. Run: ``python -m benchmarks.determinism [--device cuda]``
(on an accelerator: the same process twice and a new process).
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections.abc import Callable
from typing import Any

from ._common import machine, print_table

__all__ = ["main"]


def _ops() -> dict[str, Callable[[], Any]]:
    import torch
    import torch.nn.functional as F

    def grad(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, requires_grad=True)

    def conv() -> Any:
        x, w = grad(8, 16, 32, 32), grad(32, 16, 3, 3)
        return x, w, F.conv2d(x, w, padding=1)

    def conv_t() -> Any:
        x, w = grad(8, 16, 16, 16), grad(16, 8, 4, 4)
        return x, w, F.conv_transpose2d(x, w, stride=2)

    def lstm() -> Any:
        rnn = torch.nn.LSTM(32, 64, batch_first=True)
        x = grad(8, 20, 32)
        return (x, *rnn.parameters(), rnn(x)[0])

    def sdpa() -> Any:
        q, k, v = grad(4, 8, 64, 32), grad(4, 8, 64, 32), grad(4, 8, 64, 32)
        return q, k, v, F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def embedding() -> Any:
        w = grad(1000, 64)
        return w, F.embedding(torch.randint(0, 1000, (4096,)), w)

    def index_add() -> Any:
        src = grad(4096, 64)
        out = torch.zeros(100, 64).index_add(0, torch.randint(0, 100, (4096,)), src)
        return src, out

    def scatter_add() -> Any:
        src = grad(4096, 64)
        index = torch.randint(0, 100, (4096, 64))
        return src, torch.zeros(100, 64).scatter_add(0, index, src)

    def index_put() -> Any:
        values = grad(4096)
        index = torch.randint(0, 100, (4096,))
        return values, torch.zeros(100).index_put((index,), values, accumulate=True)

    def batchnorm() -> Any:
        x = grad(64, 32, 16, 16)
        return x, F.batch_norm(x, None, None, training=True)

    def layernorm() -> Any:
        x = grad(64, 128, 256)
        return x, F.layer_norm(x, (256,))

    def matmul() -> Any:
        a, b = grad(512, 1024), grad(1024, 512)
        return a, b, a @ b

    def cross_entropy() -> Any:
        x = grad(4096, 1000)
        return x, F.cross_entropy(x, torch.randint(0, 1000, (4096,)))

    def reductions() -> Any:
        x = grad(1 << 20)
        return x, x.sum() + x.cumsum(0)[-1] + x.float().pow(2).mean()

    def interpolate() -> Any:
        x = grad(8, 16, 32, 32)
        return x, F.interpolate(x, scale_factor=2.0, mode="bilinear")

    def max_pool() -> Any:
        x = grad(8, 16, 32, 32)
        return x, F.max_pool2d(x, 3, stride=2)

    def adaptive_pool() -> Any:
        x = grad(8, 16, 33, 33)
        return x, F.adaptive_avg_pool2d(x, 7)

    def dropout() -> Any:
        x = grad(4096, 256)
        return x, F.dropout(x, 0.5, training=True)

    def grid_sample() -> Any:
        x, grid = grad(4, 8, 32, 32), torch.rand(4, 24, 24, 2) * 2 - 1
        return x, F.grid_sample(x, grid, align_corners=False)

    def ctc() -> Any:
        logits = grad(50, 16, 20)
        targets = torch.randint(1, 20, (16, 30))
        return logits, F.ctc_loss(
            logits.log_softmax(2),
            targets,
            torch.full((16,), 50, dtype=torch.long),
            torch.full((16,), 30, dtype=torch.long),
        )

    def bincount() -> Any:
        return (torch.bincount(torch.randint(0, 1000, (1 << 16,))).float(),)

    return {
        "matmul (linear)": matmul,
        "conv2d": conv,
        "conv_transpose2d": conv_t,
        "LSTM": lstm,
        "scaled_dot_product_attention": sdpa,
        "embedding (backward: index_add)": embedding,
        "index_add": index_add,
        "scatter_add": scatter_add,
        "index_put(accumulate=True)": index_put,
        "batch_norm": batchnorm,
        "layer_norm": layernorm,
        "cross_entropy": cross_entropy,
        "sum / cumsum / mean": reductions,
        "interpolate (bilinear)": interpolate,
        "max_pool2d": max_pool,
        "adaptive_avg_pool2d": adaptive_pool,
        "dropout": dropout,
        "grid_sample": grid_sample,
        "ctc_loss": ctc,
        "bincount": bincount,
    }


def _child(threads: int, device: str = "cpu") -> dict[str, Any]:
    import torch

    from gensyn_jupyter.verify import deterministic_mode, digest

    torch.set_num_threads(threads)
    out: dict[str, Any] = {}
    with deterministic_mode():
        # after deterministic_mode: CUBLAS_WORKSPACE_CONFIG is set before CUDA starts
        torch.set_default_device(device)
        for name, op in _ops().items():
            runs = []
            warned: list[str] = []
            for _ in range(2):
                torch.manual_seed(0)
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    tensors = [t for t in op() if isinstance(t, torch.Tensor)]
                    result = tensors[-1]
                    inputs = [t for t in tensors[:-1] if t.requires_grad]
                    grads = torch.autograd.grad(result.float().sum(), inputs) if inputs else ()
                warned += [str(w.message)[:80] for w in caught if "determinis" in str(w.message)]
                runs.append(digest([result, *grads], domain=b"bench").hex())
            out[name] = {"runs": runs, "warned": sorted(set(warned))}
    return out


def _spawn(threads: int, device: str = "cpu") -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.determinism", "--child", str(threads), device],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--child"]:
        print(json.dumps(_child(int(args[1]), args[2] if len(args) > 2 else "cpu")))
        return 0
    device = args[args.index("--device") + 1] if "--device" in args else "cpu"
    print(machine())
    if device != "cpu":
        return _device_table(device)
    first, second, other = _spawn(2), _spawn(2), _spawn(1)
    rows = []
    for name in first:
        a, b, c = first[name], second[name], other[name]
        rows.append(
            [
                name,
                "yes" if a["runs"][0] == a["runs"][1] else "NO",
                "yes" if a["runs"][0] == b["runs"][0] else "NO",
                "yes" if a["runs"][0] == c["runs"][0] else "NO",
                "; ".join(a["warned"]) or "-",
            ]
        )
    print_table(
        "Bitwise reproducible on this CPU (forward + backward, deterministic mode on)",
        ["op", "same process", "new process, 2 threads", "1 thread vs 2", "warns"],
        rows,
    )
    return 0


def _device_table(device: str) -> int:
    """On an accelerator: the same process twice and a new process (threads do not matter)."""
    import torch

    print(f"{device}: {torch.cuda.get_device_name(0) if device.startswith('cuda') else device}")
    first, second = _spawn(2, device), _spawn(2, device)
    rows = [
        [
            name,
            "yes" if a["runs"][0] == a["runs"][1] else "NO",
            "yes" if a["runs"][0] == second[name]["runs"][0] else "NO",
            "; ".join(a["warned"]) or "-",
        ]
        for name, a in first.items()
    ]
    print_table(
        f"Bitwise reproducible on {device} (forward + backward, deterministic mode on)",
        ["op", "same process", "new process", "warns"],
        rows,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
