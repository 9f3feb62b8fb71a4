"""A paid task's transaction list: each once, with its block once the chain says it."""

from __future__ import annotations

from gensyn_jupyter.coordinator._payments import add_tx
from gensyn_jupyter.protocol import Payment, TxRef

FUND = "0x" + "ab" * 32


def test_a_sent_transaction_gets_its_block_when_the_watcher_sees_it_mined() -> None:
    sent = add_tx(Payment.model_construct(transactions=[]), TxRef(kind="fund", hash=FUND))
    assert [t.block for t in sent.transactions] == [None]
    mined = add_tx(sent, TxRef(kind="fund", hash=FUND, block=4))
    assert [(t.kind, t.block) for t in mined.transactions] == [("fund", 4)]
    again = add_tx(mined, TxRef(kind="fund", hash=FUND))  # seen again without a block
    assert [(t.kind, t.block) for t in again.transactions] == [("fund", 4)]
