"""The embedded node's JSON-RPC over HTTP: the methods web3.py uses, answered like anvil.

One lock serialises every call on the chain; the HTTP server is the standard library's
threading server (keep-alive, batches, ``-32601`` naming an unknown method).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import threading
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from typing import Any

from ._embedded_chain import EmbeddedChain
from ._embedded_codec import (
    RpcError,
    base_fee,
    hex_bytes,
    hex_int,
    parse_address,
    parse_bytes,
    parse_int,
)
from ._embedded_dev import DevControls
from ._embedded_exec import (
    PRIORITY_FEE,
    call,
    estimate_gas,
    fee_history,
    send_raw_transaction,
    send_transaction,
)
from ._embedded_trace import trace_transaction

__all__ = ["JsonRpc", "main", "make_server"]

_Method = Callable[[list[Any]], Any]


def _arg(params: list[Any], index: int, default: Any = None) -> Any:
    return params[index] if len(params) > index else default


class JsonRpc:
    """JSON-RPC dispatch for one :class:`EmbeddedChain`.

    Parameters
    ----------
    node
        The chain every method acts on, under its lock.
    """

    def __init__(self, node: EmbeddedChain) -> None:
        self.node = node
        dev = DevControls(node)
        client = f"gensyn-embedded/py-evm-{version('py-evm')}/eth-tester-{version('eth-tester')}"
        n = node

        def state(params: list[Any]) -> Any:
            return n.state(_arg(params, 1, "latest"))

        self.methods: dict[str, _Method] = {
            "web3_clientVersion": lambda p: client,
            "net_version": lambda p: str(n.chain_id),
            "net_listening": lambda p: True,
            "eth_chainId": lambda p: hex_int(n.chain_id),
            "eth_syncing": lambda p: False,
            "eth_accounts": lambda p: [a.address.lower() for a in n.accounts],
            "eth_blockNumber": lambda p: hex_int(n.head().block_number),
            "eth_gasPrice": lambda p: hex_int(base_fee(n.chain.header) + PRIORITY_FEE),
            "eth_maxPriorityFeePerGas": lambda p: hex_int(PRIORITY_FEE),
            "eth_feeHistory": lambda p: fee_history(n, p[0], _arg(p, 1, "latest"), _arg(p, 2)),
            "eth_getBalance": lambda p: hex_int(state(p).get_balance(parse_address(p[0]))),
            "eth_getTransactionCount": lambda p: hex_int(state(p).get_nonce(parse_address(p[0]))),
            "eth_getCode": lambda p: hex_bytes(state(p).get_code(parse_address(p[0]))),
            "eth_getStorageAt": lambda p: (
                "0x"
                + n.state(_arg(p, 2, "latest"))
                .get_storage(parse_address(p[0]), parse_int(p[1], "slot"))
                .to_bytes(32, "big")
                .hex()
            ),
            "eth_getBlockByNumber": lambda p: n.get_block(p[0], bool(_arg(p, 1, False))),
            "eth_getBlockByHash": lambda p: n.get_block_by_hash(p[0], bool(_arg(p, 1, False))),
            "eth_getTransactionByHash": lambda p: n.get_transaction(parse_bytes(p[0], "hash")),
            "eth_getTransactionReceipt": lambda p: n.get_receipt(parse_bytes(p[0], "hash")),
            "eth_getLogs": lambda p: n.get_logs(_arg(p, 0) or {}),
            "eth_call": lambda p: hex_bytes(call(n, p[0], _arg(p, 1, "latest"))),
            "eth_estimateGas": lambda p: hex_int(estimate_gas(n, p[0], _arg(p, 1, "latest"))),
            "eth_sendRawTransaction": lambda p: hex_bytes(
                send_raw_transaction(n, parse_bytes(p[0], "transaction"))
            ),
            "eth_sendTransaction": lambda p: hex_bytes(send_transaction(n, p[0])),
            "debug_traceTransaction": lambda p: trace_transaction(
                n, parse_bytes(p[0], "hash"), _arg(p, 1)
            ),
            "evm_increaseTime": lambda p: dev.increase_time(p[0]),
            "evm_setNextBlockTimestamp": lambda p: dev.set_next_block_timestamp(p[0]),
            "evm_mine": lambda p: dev.mine(_arg(p, 0)),
            "evm_snapshot": lambda p: dev.snapshot(),
            "evm_revert": lambda p: dev.revert(p[0]),
            "anvil_setBalance": lambda p: dev.set_balance(parse_address(p[0]), p[1]),
        }
        self.methods["anvil_setNextBlockTimestamp"] = self.methods["evm_setNextBlockTimestamp"]
        self.methods["anvil_mine"] = lambda p: dev.mine({"blocks": _arg(p, 0, 1)})

    def handle(self, request: object) -> dict[str, Any] | None:
        """The answer to one JSON-RPC request object (``None`` for a notification)."""
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return _answer(None, error=RpcError(-32600, "Invalid request"))
        request_id = request.get("id")
        method: str = request["method"]
        params = request.get("params", [])
        if params is None:
            params = []
        handler = self.methods.get(method)
        try:
            if handler is None:
                raise RpcError(-32601, f"Method not found: {method}")
            if not isinstance(params, list):
                raise RpcError(-32602, f"{method}: params must be a list")
            with self.node.lock:
                result = handler(params)
        except RpcError as exc:
            return _answer(request_id, error=exc)
        except (IndexError, KeyError, TypeError, ValueError, AttributeError) as exc:
            return _answer(request_id, error=RpcError(-32602, f"{method}: invalid params: {exc}"))
        except Exception as exc:
            traceback.print_exc()
            return _answer(request_id, error=RpcError(-32603, f"{method}: {exc!r}"))
        if "id" not in request:
            return None
        return _answer(request_id, result=result)

    def handle_body(self, body: bytes) -> object:
        """The answer to an HTTP body: one request or a batch."""
        try:
            payload = json.loads(body)
        except ValueError:
            return _answer(None, error=RpcError(-32700, "Parse error"))
        if isinstance(payload, list):
            if not payload:
                return _answer(None, error=RpcError(-32600, "Invalid request"))
            return [a for a in (self.handle(r) for r in payload) if a is not None]
        return self.handle(payload)


def _answer(
    request_id: object, *, result: object = None, error: RpcError | None = None
) -> dict[str, Any]:
    if error is not None:
        return {"jsonrpc": "2.0", "id": request_id, "error": error.to_json()}
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    rpc: JsonRpc

    def setup(self) -> None:
        super().setup()
        # headers and body go out as two writes: without this, Nagle's algorithm holds the
        # body until the client's delayed ACK, some 40 ms per request on keep-alive.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _reply(self, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(200)
        # like anvil: any origin may call (a browser wallet page talks to the node directly)
        self.send_header("Access-Control-Allow-Origin", "*")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        answer = self.rpc.handle_body(self.rfile.read(length))
        self._reply(b"" if answer is None else json.dumps(answer).encode(), "application/json")

    def do_GET(self) -> None:
        self._reply(b"gensyn embedded dev chain: POST JSON-RPC here\n", "text/plain")

    def do_OPTIONS(self) -> None:
        headers = self.headers.get("Access-Control-Request-Headers") or "content-type"
        cors = {"Access-Control-Allow-Methods": "GET,POST", "Access-Control-Allow-Headers": headers}
        self._reply(b"", "text/plain", cors)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def make_server(node: EmbeddedChain, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server answering JSON-RPC for ``node``; call ``serve_forever()`` on it.

    Parameters
    ----------
    node
        The chain.
    host, port
        Where to listen; port 0 picks a free one (``server.server_address[1]``).
    """
    handler = type("_RpcHandler", (_RequestHandler,), {"rpc": JsonRpc(node)})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    """Run the embedded node until SIGTERM or SIGINT (``python -m`` this module).

    Parameters
    ----------
    argv
        ``--host``, ``--port``, ``--chain-id``, ``--accounts``, ``--balance`` (ether).

    Returns
    -------
    int
        The exit status: 0 after a clean stop.
    """
    parser = argparse.ArgumentParser(
        prog="python -m gensyn_jupyter.chain._embedded_rpc",
        description="A dev EVM chain (eth-tester, py-evm) answering JSON-RPC like anvil.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8545)
    parser.add_argument("--chain-id", type=int, default=31337)
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--balance", type=int, default=10_000, help="ether per dev account")
    args = parser.parse_args(argv)
    if args.chain_id <= 0:
        parser.error(f"chain id must be positive, not {args.chain_id}")
    if args.accounts < 0 or args.balance < 0:
        parser.error("--accounts and --balance must not be negative")

    node = EmbeddedChain(chain_id=args.chain_id, accounts=args.accounts, balance_eth=args.balance)
    server = make_server(node, args.host, args.port)

    def stop(_signum: int, _frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    lines = [f"embedded chain {args.chain_id} listening on http://{host!s}:{port}"]
    lines += [f"({i}) {account.address}" for i, account in enumerate(node.accounts)]
    print("\n".join(lines), flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    print("embedded chain stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
