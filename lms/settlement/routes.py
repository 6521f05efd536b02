"""Partner statements: ``GET /v1/partner/statements/{YYYY-MM}`` as JSON or CSV."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from lms.api.openapi import merge, problems
from lms.auth.guards import current_principal, requires_scope
from lms.partners.routes import PARTNER_AUTH_PROBLEMS
from lms.settlement.csv import statement_csv
from lms.settlement.errors import InvalidMonth, MonthInFuture
from lms.settlement.schemas import StatementOut
from lms.settlement.service import SettlementService

CSV = "text/csv"

DESCRIPTION = """\
The calling partner's own statement for a calendar month (UTC); there is no partner in the
URL, so no other partner's statement can be named.

- **Month of a transaction** = when it was posted to the ledger (UTC), not when the purchase
  happened: a late accrual lands on the month it is posted in, so a closed month never changes.
- `issuedMiles`: miles the partner credited to members (accruals) net of returns (reversals);
  `partnerOwes` = issuedMiles x `pricePerMileMilliMinor` / 1000. `redeemedMiles`: miles
  captured at the partner net of refunds; `programmeOwes` = redeemedMiles x
  `valuePerMileMilliMinor` / 1000. Amounts in minor units of `currency`, each total rounded
  once, half away from zero. `net` = partnerOwes - programmeOwes (positive: the partner pays).
- `status`: `closed` once the month has ended and been closed (an hourly job, an hour after
  the month's end): then it is served from an unchangeable copy with the prices of the day it
  was closed. Otherwise `open`, computed from the ledger now, at today's prices.
- One line per transaction: entry id, posting time, kind, the partner's reference
  (partnerTxnId or order reference), the card number masked to its last four digits, miles
  and money signed as they count towards the totals.
- **CSV**: `?format=csv`, or `Accept: text/csv` (the query parameter wins). One `line` row per
  transaction, then `total` rows `issued`, `redeemed` and `net`.
"""


class StatementController(Controller):
    path = "/partner/statements"
    tags = ["partners"]
    guards = [requires_scope("statements")]

    @get("/{month:str}", operation_id="getPartnerStatement",
         summary="The partner's monthly settlement statement (JSON or CSV)",
         description=DESCRIPTION,
         responses=merge(
             # The JSON form; the CSV form (text/csv) is described above.
             {200: ResponseSpec(data_container=StatementOut,
                                description="The statement (JSON, or CSV on request)")},
             problems(*PARTNER_AUTH_PROBLEMS, InvalidMonth, MonthInFuture)))
    async def statement(
        self, request: Request[Any, Any, Any], state: State,
        month: Annotated[str, Parameter(max_length=16, description="YYYY-MM")],
        output: Annotated[Literal["json", "csv"] | None, QueryParameter(
            name="format", description="`csv` for CSV; default: by Accept")] = None,
    ) -> Response[StatementOut | str]:
        principal = current_principal(request)

        async def work(session: AsyncSession) -> StatementOut:
            return await SettlementService(session).statement(principal.id, month)

        result: StatementOut = await state.db.transaction(work)
        wants_csv = output == "csv" or (
            output is None and request.accept.best_match([
                "application/json", CSV], default="application/json") == CSV)
        if wants_csv:
            return Response(statement_csv(result), media_type=CSV, headers={
                "Content-Disposition":
                    f'attachment; filename="statement-{result.partner_code}-{result.month}.csv"'})
        return Response(result)
