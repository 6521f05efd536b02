"""the Idempotency-Key's claim and answer as SQL functions

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-24 09:30:00

A hot write done by one server-side function (one round trip and one commit, instead of a
statement per step with BEGIN and COMMIT around them) claims its Idempotency-Key and stores
its answer in that same function, with the rules of lms.idempotency.service:

- ``idempotency_claim`` inserts the key. When a concurrent transaction holds the same key,
  the insert waits for it to end: after its commit the stored answer comes back (claimed =
  false), after its rollback the key is claimed here. The same key with another request is
  refused with SQLSTATE ID001 (idempotency_key_reused); a key whose request has not finished
  (no stored answer) with ID002 (idempotency_request_unfinished).
- ``idempotency_answer`` stores the answer on the claimed row.

Only successful answers are stored: an error raised later in the same statement rolls the
claim back with everything else, so the key can be used again.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLAIM = """
CREATE FUNCTION idempotency_claim(p_principal text, p_key text, p_request_hash text,
                                  OUT claimed boolean, OUT status_code integer,
                                  OUT response_body bytea)
LANGUAGE plpgsql AS $$
DECLARE
  stored_hash text;
BEGIN
  INSERT INTO idempotency_keys (principal, key, request_hash)
  VALUES (p_principal, p_key, p_request_hash)
  ON CONFLICT (principal, key) DO NOTHING;
  IF FOUND THEN
    claimed := true;
    RETURN;
  END IF;
  claimed := false;
  SELECT k.request_hash, k.status_code, k.response_body
    INTO stored_hash, status_code, response_body
    FROM idempotency_keys k WHERE k.principal = p_principal AND k.key = p_key;
  IF stored_hash IS NOT NULL AND stored_hash <> p_request_hash THEN
    RAISE EXCEPTION 'idempotency_key_reused' USING ERRCODE = 'ID001';
  END IF;
  -- No row (a manual purge in between) or no answer yet: the first request is still open.
  IF status_code IS NULL OR response_body IS NULL THEN
    RAISE EXCEPTION 'idempotency_request_unfinished' USING ERRCODE = 'ID002';
  END IF;
END $$"""

ANSWER = """
CREATE FUNCTION idempotency_answer(p_principal text, p_key text, p_status_code integer,
                                   p_response_body bytea) RETURNS void
LANGUAGE sql AS $$
  UPDATE idempotency_keys SET status_code = p_status_code, response_body = p_response_body
   WHERE principal = p_principal AND key = p_key
$$"""


def upgrade() -> None:
    op.execute(CLAIM)
    op.execute(ANSWER)


def downgrade() -> None:
    op.execute("DROP FUNCTION idempotency_answer(text, text, integer, bytea)")
    op.execute("DROP FUNCTION idempotency_claim(text, text, text)")
