"""A partner's clearing account in the ledger, split into shards (DESIGN §3).

Every accrual of a partner debits its clearing account and every capture credits it. With one
account, every concurrent accrual of a partner queued on that account's one balance row. The
clearing account is therefore a set of system accounts with the code ``partner:<id>``, shards
0 to CLEARING_SHARDS - 1; ``partners.clearing_account_id`` names shard 0 (the id the API shows).

Writers post to one shard so that concurrent requests spread over the shards: an accrual
the serving backend's (``partner_accrue()``, migration 0026: the accruals of a group-commit
batch then lock one), the other writes the member's (``clearing_shard``); readers
(settlement statements and their verification) sum every account with the partner's code, so
they stay exact whatever the number of shards and whichever shard a posting went to.
"""

from __future__ import annotations

from collections.abc import Sequence

from lms.ledger.repository import LedgerRepository
from lms.ledger.service import ALL_UNITS

CLEARING_SHARDS = 16


def clearing_code(partner_id: int) -> str:
    return f"partner:{partner_id}"


async def ensure_clearing(repo: LedgerRepository, partner_id: int) -> int:
    """Open (or find) every shard of a partner's clearing account; shard 0's id."""
    code = clearing_code(partner_id)
    for shard in range(CLEARING_SHARDS):
        await repo.ensure_system_account(code, shard, ALL_UNITS)
    account_id = await repo.system_account_id(code, 0)
    assert account_id is not None
    return account_id


def clearing_shard(shards: Sequence[int], member_id: int) -> int:
    """The shard a posting for this member goes to (``shards``: the partner's clearing
    accounts in shard order, at least shard 0)."""
    return shards[member_id % len(shards)]
