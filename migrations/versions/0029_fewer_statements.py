"""the hot writes run fewer statements: the key's claim and answer inline, a gift's local
day and year looked up only near a limit, a batch of one without the batch's locks

Revision ID: 0029
Revises: 0028
Create Date: 2026-11-24 18:00:00

On two cores a good part of a transfer's PostgreSQL time is the setting up and tearing down
of each statement a PL/pgSQL function runs (a fifth of the backends' CPU in ExecutorStart
alone, by ``perf``), beside the rows it writes. This migration removes statements from the
writes without changing a rule, an error or a lock order:

- **The Idempotency-Key's claim and answer.** Each write (``partner_accrue()``,
  ``gift_send()``, ``partner_hold_open()``, ``partner_hold_capture()``,
  ``partner_hold_void()``) called ``idempotency_claim()`` and ``idempotency_answer()``, each a
  statement calling a function that runs one more. The claim's INSERT and the answer's
  UPDATE are now the writes' own statements; ``idempotency_claim()`` is called only when the
  key is already there (a replay, a reuse, an unfinished first request) and still decides
  what that means.
- **A gift's limits.** ``gift_send()`` found the starts of the sender's and the recipient's
  local day and year (``gift_local_starts()``, twice a gift, each with a subtransaction for a
  zone that cannot be read) before counting what they sent and received since. Whatever the
  zone, a day and a year began less than 367 days before the gift: when what both sent and
  received in the last 367 days leaves room under every limit, so does what they sent and
  received since their own day and year began, and the starts are not needed. They are
  looked up, and counted from as before, only when that sum comes near a limit.
- **A batch of one.** ``partner_accrue_batch()`` and ``gift_send_batch()`` take all their
  calls' locks first, in the global orders, because one call would otherwise hold its locks
  while the next takes its own out of order (0026). A batch of one call has no next call:
  the call takes the same locks in the same orders itself, so the batch's statements are
  skipped.

The functions are edited as the server has them (``pg_get_functiondef``), each edit replacing
text that must be there exactly once, so that this migration does not carry a second copy of
each function; downgrade makes the reverse edits.
"""

import textwrap
from collections.abc import Sequence
from types import ModuleType

import sqlalchemy as sa
from alembic import op
from alembic.script import ScriptDirectory

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WRITES = ("partner_accrue", "gift_send", "partner_hold_open", "partner_hold_capture",
          "partner_hold_void")

# The claim as every write has it (0023-0025), from its call to the replay's END IF.
CLAIM_FROM = "  SELECT * INTO claim FROM idempotency_claim(p_principal, p_key, p_request_hash);\n"
CLAIM_TO = "  END IF;\n"

CLAIM_INLINE = """\
  -- The key's claim, idempotency_claim()'s own INSERT: the function is called only for a key
  -- already there, to answer it or refuse it.
  INSERT INTO idempotency_keys (principal, key, request_hash)
  VALUES (p_principal, p_key, p_request_hash) ON CONFLICT (principal, key) DO NOTHING;
  IF NOT FOUND THEN
{claim}  END IF;
"""

ANSWER = """
  PERFORM idempotency_answer(p_principal, p_key, status_code, response_body);
"""

# idempotency_answer()'s UPDATE; the OUT parameters are named by their function, since the
# key's table has columns of the same names.
ANSWER_INLINE = """
  UPDATE idempotency_keys
     SET status_code = {name}.status_code, response_body = {name}.response_body
   WHERE principal = p_principal AND key = p_key;
"""

GIFT_DECLARE = """
  c record;
"""

GIFT_DECLARE_NEAR = """
  c record;
  near record;
"""

# gift_send()'s look-up of the local starts, its count and its limit checks (0024), from
# this line to the last check's END IF.
GIFT_LIMITS_FROM = "  SELECT * INTO s_from FROM gift_local_starts(p_now, f.s_timezone);\n"
GIFT_LIMITS_TO = "      DETAIL = 'yearly';\n  END IF;\n"

GIFT_NEAR = """\
  -- Whatever their zones, the members' day and year began less than 367 days ago: when what
  -- they sent and received since then leaves room under every limit, so does what they sent
  -- and received since their own day and year began, and those starts are not looked up.
  SELECT (SELECT COALESCE(sum(miles), 0) FROM gifts
           WHERE sender_id = p_sender_id AND created_at >= p_now - interval '367 days')
           AS sent,
         (SELECT COALESCE(sum(miles), 0) FROM gifts
           WHERE recipient_id = f.r_id AND created_at >= p_now - interval '367 days')
           AS received
    INTO near;
  IF near.sent + p_miles > LEAST(daily_limit, yearly_limit)
     OR near.received + p_miles > LEAST(daily_received, yearly_received) THEN
{limits}  END IF;
"""

BATCHES = {"partner_accrue_batch": "ACCRUAL_LOCKS", "gift_send_batch": "GIFT_LOCKS"}

ONE_CALL = """
  -- A batch of one takes the same locks in the same orders by itself.
  IF cardinality(p_principal) > 1 THEN{locks}
  END IF;"""


def module(revision_id: str) -> ModuleType:
    config = op.get_context().config
    assert config is not None
    script = ScriptDirectory.from_config(config).get_revision(revision_id)
    assert script is not None
    return script.module


def between(source: str, first: str, last: str) -> str:
    """``source`` from the line ``first`` to the first ``last`` after it, both included."""
    start = source.index(first)
    return source[start:source.index(last, start) + len(last)]


def edits() -> dict[str, list[tuple[str, str]]]:
    """Per function, the texts replaced and what replaces them."""
    claim = between(module("0023").PARTNER_ACCRUE, CLAIM_FROM, CLAIM_TO)
    inline = CLAIM_INLINE.format(claim=textwrap.indent(claim, "  "))
    by_name: dict[str, list[tuple[str, str]]] = {
        name: [(claim, inline), (ANSWER, ANSWER_INLINE.format(name=name))]
        for name in WRITES}
    limits = between(module("0024").GIFT_SEND, GIFT_LIMITS_FROM, GIFT_LIMITS_TO)
    by_name["gift_send"] += [
        (GIFT_DECLARE, GIFT_DECLARE_NEAR),
        (limits, GIFT_NEAR.format(limits=textwrap.indent(limits, "  ")))]
    group_commit = module("0026")
    for name, locks in BATCHES.items():
        text: str = getattr(group_commit, locks)
        by_name[name] = [(text, ONE_CALL.format(locks=textwrap.indent(text, "  ")))]
    return by_name


def replace_in_functions(reverse: bool) -> None:
    bind = op.get_bind()
    for name, pairs in edits().items():
        definition: str = bind.execute(sa.text(
            "SELECT pg_get_functiondef(p.oid) FROM pg_proc p"
            " WHERE p.proname = :name AND p.pronamespace = 'public'::regnamespace"),
            {"name": name}).scalar_one()
        for old, new in pairs:
            if reverse:
                old, new = new, old
            if definition.count(old) != 1:
                raise RuntimeError(f"{name}() is not as this migration expects: {old!r}")
            definition = definition.replace(old, new)
        # On the driver's own cursor, without parameters: the definition goes to the server
        # as it is, its % and : not taken for placeholders.
        driver = bind.connection.dbapi_connection
        assert driver is not None
        driver.cursor().execute(definition)


def upgrade() -> None:
    replace_in_functions(reverse=False)


def downgrade() -> None:
    replace_in_functions(reverse=True)
