"""a partner key's requests numbered by a sequence of its own, not by updating one row

Revision ID: 0030
Revises: 0029
Create Date: 2026-11-24 19:30:00

Every partner request is counted against its key's rate limit. Until now each one updated
its key's single row of ``api_key_windows`` (``count = count + 1``): a write transaction per
request, all of one key's concurrent requests queued on that row's lock one behind the other,
and a new row version each time. The benchmark's partner, one key, sent some 900 requests a
second through that row; keeping its check otherwise the same but without the update cut the
CPU of a transfer by about a tenth (docs/performance.md).

Now each key has a sequence, ``api_key_requests_<key id>``, and a request's number in its
window is ``nextval()`` minus the window's ``base``: the sequence's value when the window
began. ``nextval()`` takes no row lock and needs no transaction id; the key's row of
``api_key_windows`` is read, and written once a minute, when a request opens a new window.
The count stays exact within a window: its requests draw distinct numbers, so no more than
the limit pass. At a window's start, requests racing to open it may each set its base; the
base only moves down (the earliest number wins), so a racing request may read a base above
the final one and a number below its true position, by at most the number of requests racing
with it (no more pass than the limit unless the limit is smaller than that race). At a
window's edge, a request that drew its number before the new window opened but reads its row
after counts as within the new window's limit, as before (a client can send up to twice its
limit across the edge of two windows).

The sequences are UNLOGGED, as the table is (0020): after a crash both start again, which
restarts the current windows' counts and loses nothing else. A trigger on ``api_keys`` makes
a key's sequence when the key is made, by whatever path; a deleted key's sequence goes with
it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0030"
down_revision: str | None = "0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REQUEST_NUMBER = r"""
CREATE FUNCTION api_key_request_number(p_key_id bigint, p_window timestamptz)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint := nextval(format('api_key_requests_%s', p_key_id)::regclass);
    w api_key_windows;
BEGIN
    SELECT * INTO w FROM api_key_windows WHERE key_id = p_key_id;
    IF NOT FOUND OR w.window_start < p_window THEN
        -- This request opens the window: its base is the number before this one. A window
        -- only moves forward (a request stamped just before the minute turned counts in the
        -- newer window); a request racing to open the same window lowers its base to its
        -- own number's predecessor, so that the earliest number opens it.
        INSERT INTO api_key_windows AS k (key_id, window_start, base)
        VALUES (p_key_id, p_window, n - 1)
        ON CONFLICT (key_id) DO UPDATE
           SET base = CASE WHEN excluded.window_start > k.window_start THEN excluded.base
                           ELSE least(k.base, excluded.base) END,
               window_start = greatest(k.window_start, excluded.window_start)
        RETURNING * INTO w;
    END IF;
    RETURN n - w.base;
END $$
"""

KEY_SEQUENCE = r"""
CREATE FUNCTION api_key_sequence() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        EXECUTE format('CREATE UNLOGGED SEQUENCE IF NOT EXISTS api_key_requests_%s', NEW.id);
        RETURN NEW;
    END IF;
    EXECUTE format('DROP SEQUENCE IF EXISTS api_key_requests_%s', OLD.id);
    RETURN OLD;
END $$
"""


def upgrade() -> None:
    op.execute("TRUNCATE api_key_windows")
    op.execute("ALTER TABLE api_key_windows DROP COLUMN count")
    op.execute("ALTER TABLE api_key_windows ADD COLUMN base bigint NOT NULL")
    op.execute(KEY_SEQUENCE)
    op.execute("CREATE TRIGGER api_keys_sequence AFTER INSERT OR DELETE ON api_keys "
               "FOR EACH ROW EXECUTE FUNCTION api_key_sequence()")
    op.execute("""
        DO $$
        DECLARE k bigint;
        BEGIN
            FOR k IN SELECT id FROM api_keys LOOP
                EXECUTE format('CREATE UNLOGGED SEQUENCE IF NOT EXISTS api_key_requests_%s', k);
            END LOOP;
        END $$""")
    op.execute(REQUEST_NUMBER)


def downgrade() -> None:
    op.execute("DROP FUNCTION api_key_request_number(bigint, timestamptz)")
    op.execute("DROP TRIGGER api_keys_sequence ON api_keys")
    op.execute("DROP FUNCTION api_key_sequence()")
    op.execute("""
        DO $$
        DECLARE s text;
        BEGIN
            FOR s IN SELECT c.relname FROM pg_class c
                      WHERE c.relkind = 'S' AND c.relname ~ '^api_key_requests_[0-9]+$' LOOP
                EXECUTE format('DROP SEQUENCE %I', s);
            END LOOP;
        END $$""")
    op.execute("TRUNCATE api_key_windows")
    op.execute("ALTER TABLE api_key_windows DROP COLUMN base")
    op.execute("ALTER TABLE api_key_windows ADD COLUMN count integer NOT NULL")
