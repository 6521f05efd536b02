"""the hot writes keep their plans: idempotency_answer() in PL/pgSQL, the batches' lock
statements planned once per session

Revision ID: 0028
Revises: 0027
Create Date: 2026-11-24 16:00:00

pg_stat_statements with ``track_planning`` on, under the HTTP benchmark's transfers on
1,000,000 members (2026-11-24), showed three statements planned at every call, costing more
to plan than to run:

- ``idempotency_answer()`` (0022) is a SQL function that is not inlined (it is called as a
  statement), and PostgreSQL 15 parses and plans a SQL function's body at every call: 0.04 ms
  of planning for a 0.03 ms UPDATE, once per write. In PL/pgSQL its plan is kept for the
  session, as the callers' own statements are.
- The statements with which ``partner_accrue_batch()`` and ``gift_send_batch()`` (0026) lock
  their rows first take arrays whose length the plan cache cannot see, so it judged a plan
  made for the actual values cheaper than a generic one and made one per call: 0.53 ms of
  planning for 0.27 ms of locking in an accrual batch. The generic plan is the same index
  plan (member by card number or id, balance by key, then the sort that fixes the lock
  order), so the batch functions now plan once per session, as ``ledger_post()`` does (0019).
  The setting holds for the calls the batch makes, whose statements already ran on generic
  plans after their first five calls.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ANSWER = """
CREATE OR REPLACE FUNCTION idempotency_answer(p_principal text, p_key text,
                                              p_status_code integer, p_response_body bytea)
RETURNS void
LANGUAGE {language} AS $$
{body}
$$"""

UPDATE = """UPDATE idempotency_keys
     SET status_code = p_status_code, response_body = p_response_body
   WHERE principal = p_principal AND key = p_key"""

BATCHES = ("partner_accrue_batch", "gift_send_batch")


def upgrade() -> None:
    op.execute(ANSWER.format(language="plpgsql", body=f"BEGIN\n  {UPDATE};\nEND"))
    for name in BATCHES:
        op.execute(f"ALTER FUNCTION {name} SET plan_cache_mode = force_generic_plan")


def downgrade() -> None:
    for name in BATCHES:
        op.execute(f"ALTER FUNCTION {name} RESET plan_cache_mode")
    op.execute(ANSWER.format(language="sql", body=f"  {UPDATE}"))
