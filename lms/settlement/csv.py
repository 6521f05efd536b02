"""A statement as CSV: one row per transaction, then one row per total (``kind`` issued,
redeemed or net), the same figures as the JSON (``record`` tells the two kinds apart)."""

from __future__ import annotations

import csv
import io

from lms.settlement.schemas import StatementOut

COLUMNS = ("record", "month", "status", "currency", "entry_id", "posted_at", "kind", "side",
           "reference", "card_number", "miles", "amount")


def statement_csv(statement: StatementOut) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    common = (statement.month, statement.status, statement.currency)
    for line in statement.lines:
        writer.writerow(("line", *common, line.entry_id, line.posted_at.isoformat(),
                         line.kind, line.side, line.reference or "", line.card_number or "",
                         line.miles, line.amount))
    for name, miles, amount in (
            ("issued", statement.issued_miles, statement.partner_owes),
            ("redeemed", statement.redeemed_miles, statement.programme_owes),
            ("net", "", statement.net)):
        writer.writerow(("total", *common, "", "", name, "", "", "", miles, amount))
    return out.getvalue()
