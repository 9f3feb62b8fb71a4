"""The devnet's chain: a dev node, the deployed market, and who holds which dev key.

Dev accounts (the public development mnemonic, play money only):
0 the notebook user (the signer's key), 1 the coordinator's operator,
2.. providers, 7 the faucet, 8 the referee, 9 the treasury.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from web3 import HTTPProvider, Web3

from ..chain import Devchain, Market, MarketConfig, start_anvil, start_devchain

__all__ = [
    "MAX_PROVIDERS",
    "DevnetChain",
    "start_devnet_chain",
]

MAX_PROVIDERS = 5
_ETH = 10**18


@dataclass
class DevnetChain:
    """A running dev chain with the market deployed on it."""

    node: Devchain
    market: str

    def key(self, index: int) -> str:
        """The private key (hex) of dev account ``index``."""
        return "0x" + bytes(self.node.accounts[index].key).hex()

    @property
    def user_key(self) -> str:
        return self.key(0)

    @property
    def operator_key(self) -> str:
        return self.key(1)

    def provider_key(self, number: int) -> str:
        """Key of provider ``number`` (1-based)."""
        if not 1 <= number <= MAX_PROVIDERS:
            raise ValueError(f"the devnet has dev keys for at most {MAX_PROVIDERS} providers")
        return self.key(1 + number)

    @property
    def faucet_key(self) -> str:
        return self.key(7)

    @property
    def referee_key(self) -> str:
        return self.key(8)

    def stop(self) -> None:
        self.node.stop()


def start_devnet_chain(
    *, kind: str, log_path: Path, challenge_window: int = 1, min_stake_eth: int = 1
) -> DevnetChain:
    """Start a dev node (``anvil``, ``embedded`` or ``auto``) and deploy the market on it."""
    if kind == "anvil":
        node = start_anvil(log_path=log_path)
    elif kind == "embedded":
        from ..chain import start_embedded

        node = start_embedded(log_path=log_path)
    else:
        node = start_devchain(log_path=log_path)
    try:
        accounts = node.accounts
        w3 = Web3(HTTPProvider(node.rpc_url))
        market = Market.deploy(
            w3=w3,
            deployer=accounts[0],
            config=MarketConfig(
                operator=accounts[1].address,
                referee=accounts[8].address,
                treasury=accounts[9].address,
                min_stake=min_stake_eth * _ETH,
                min_bond=_ETH // 10,
                unbonding_delay=60,
                challenge_window=challenge_window,
            ),
        )
    except BaseException:
        node.stop()
        raise
    return DevnetChain(node=node, market=market.address)
