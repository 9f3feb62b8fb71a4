"""Transfer: a cell's data to the coordinator and back, on loopback.

A 200 MB dataset tensor and a 100 MB model (a 5000x5000 linear layer) are
captured by the kernel's own ``build_bundle`` (safetensors, content-addressed
by sha256) and uploaded with ``BlobClient.upload_missing`` (a HEAD per blob,
then a PUT of the missing ones) to a coordinator on 127.0.0.1; then the same
cell runs again with unchanged data and one changed line of code; then the
dataset blob is downloaded (hash checked). Baseline: sha256 of the same bytes
in this process (each side must hash every byte once). Run:
``python -m benchmarks.transfer [--quick]`` (quick: 20 MB and 10 MB).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from typing import Any

from ._common import machine, print_table, start_coordinator

__all__ = ["main", "run"]

CELL = "total = float(data[:10].sum()) + float(model.weight[0, 0])\n"


def _mb(n: int) -> float:
    return n / 1e6


def run(*, quick: bool = False) -> None:
    """Print the upload, re-send and download figures."""
    import httpx
    import torch

    from gensyn_jupyter.capture import build_bundle
    from gensyn_jupyter.protocol import BlobClient, sha256_hex

    data_n, side = (5_000_000, 1600) if quick else (50_000_000, 5000)
    ns: dict[str, Any] = {
        "torch": torch,
        "data": torch.randn(data_n),
        "model": torch.nn.Linear(side, side, bias=False),
    }
    rows: list[list[object]] = []
    with start_coordinator() as (url, _proc), httpx.Client(base_url=url, timeout=600) as http:
        blobs = BlobClient(client=http)

        started = time.perf_counter()
        prepared = build_bundle(CELL, ns)
        capture_s = time.perf_counter() - started
        payload = {**prepared.blobs, sha256_hex(prepared.bundle_json()): prepared.bundle_json()}
        total = sum(len(b) for b in payload.values())

        started = time.perf_counter()
        for blob in payload.values():
            hashlib.sha256(blob).digest()
        hash_s = time.perf_counter() - started

        started = time.perf_counter()
        sent = blobs.upload_missing(payload)
        upload_s = time.perf_counter() - started

        again = build_bundle(CELL + "total = total * 2\n", ns)
        payload2 = {**again.blobs, sha256_hex(again.bundle_json()): again.bundle_json()}
        started = time.perf_counter()
        resent = blobs.upload_missing(payload2)
        resend_s = time.perf_counter() - started

        biggest = max(prepared.blobs, key=lambda sha: len(prepared.blobs[sha]))
        started = time.perf_counter()
        got = blobs.get_blob(biggest)
        download_s = time.perf_counter() - started

    hash_rate = _mb(total) / hash_s
    rows.append(["sha256 in this process (baseline)", _mb(total), hash_s, hash_rate, 1.0])
    rows.append(
        [
            "capture (build_bundle: safetensors + sha256)",
            _mb(total),
            capture_s,
            _mb(total) / capture_s,
            _mb(total) / capture_s / hash_rate,
        ]
    )
    rows.append(
        [
            "upload, first run (HEAD + PUT)",
            _mb(sent),
            upload_s,
            _mb(sent) / upload_s,
            _mb(sent) / upload_s / hash_rate,
        ]
    )
    rows.append(
        [
            "download of the largest blob (GET, hash checked)",
            _mb(len(got)),
            download_s,
            _mb(len(got)) / download_s,
            _mb(len(got)) / download_s / hash_rate,
        ]
    )
    print_table(
        f"transfer on loopback ({machine()})",
        ["step", "MB", "s", "MB/s (goal >= 500)", "ratio to sha256"],
        rows,
    )
    new_code = sum(len(b) for sha, b in payload2.items() if sha not in payload)
    data_resent = resent - new_code
    print(
        f"second run, data unchanged, one line of code changed: {resent:,} bytes sent "
        f"({len(payload2)} blobs checked in {resend_s * 1000:.0f} ms; data blobs re-sent: "
        f"{data_resent:,} bytes; goal: 0 bytes of data, only the changed code)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20 MB + 10 MB instead of 200 + 100")
    args = parser.parse_args(argv)
    run(quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
