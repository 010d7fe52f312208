"""The cluster's data store: every SQL statement the cluster runs, on one connection.

Like APScheduler's data stores, a small interface with PostgreSQL behind it.  Each
method is one autocommit statement (one round trip, one transaction), so a method
that returned has committed; remote raises are stored in batches (`send_batch`).
The schema is versioned; nodes that start together create it under an advisory lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, NamedTuple

import psycopg
from psycopg import errors, pq, sql

VERSION = 1
_LOCK = 0x5B_C1_05_7E          # pg_advisory_xact_lock key for creating the schema
_NODE = 0x5B_C1                # first key of the session lock a running node holds
RELEASED = "fires released"    # a notification's payload (never a node name: a space)

_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.schema_version (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS {s}.nodes (
    cluster text NOT NULL, node text NOT NULL, host text, pid integer,
    joined timestamptz NOT NULL DEFAULT now(), heartbeat timestamptz, left_at timestamptz,
    PRIMARY KEY (cluster, node));
CREATE TABLE IF NOT EXISTS {s}.signals (
    id bigserial PRIMARY KEY, cluster text NOT NULL, node text NOT NULL,
    num smallint NOT NULL, sender text NOT NULL, key uuid NOT NULL,
    raised timestamptz NOT NULL DEFAULT clock_timestamp(), taken_by uuid,
    UNIQUE (key, node));
CREATE INDEX IF NOT EXISTS signals_by_node ON {s}.signals (cluster, node, id);
CREATE TABLE IF NOT EXISTS {s}.fires (
    cluster text NOT NULL, source text NOT NULL, fire_at double precision NOT NULL,
    node text NOT NULL, claimed timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster, source, fire_at));
"""


class Raise(NamedTuple):
    """One remote raise: `num` for `node` (or "*"), woken through `channel`."""
    num: int
    node: str
    sender: str
    key: uuid.UUID
    channel: str


def _array(items: Iterable[object]) -> str:
    """A PostgreSQL array literal of plain words: node names (checked by settings.py),
    "*", numbers, uuids and channel names need no quoting.  Much cheaper to send than
    a list psycopg adapts element by element."""
    return "{" + ",".join(map(str, items)) + "}"


_SEND = (   # send_batch(): $1 silence, $2 cluster, then the raises' and wakes' arrays
    "WITH known AS (SELECT node, left_at IS NULL AND heartbeat > now() - "
    "make_interval(secs => $1::float8) AS live FROM {s}.nodes WHERE cluster = $2::text), "
    "ins AS (INSERT INTO {s}.signals (cluster, node, num, sender, key) "
    "SELECT $2::text, k.node, r.num, r.sender, r.key FROM unnest($3::text[], "
    "$4::smallint[], $5::text[], $6::uuid[]) WITH ORDINALITY AS r(node, num, sender, "
    "key, ord) JOIN known k ON k.node = r.node OR (r.node = '*' AND k.live) "
    "ORDER BY r.ord, k.node ON CONFLICT DO NOTHING) "
    "SELECT node, live, (SELECT count(pg_notify(c, p)) FROM unnest($7::text[], "
    "$8::text[]) AS w(c, p)) FROM known")


def _check(result: pq.abc.PGresult, conn: psycopg.Connection[Any]) -> pq.abc.PGresult:
    """The result, or the psycopg.Error its failure is (as a cursor would raise)."""
    if result.status in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
        return result
    raise errors.error_from_result(result, encoding=conn.info.encoding)


class SchemaError(Exception):
    """The schema in PostgreSQL is one this version cannot use."""


class Store:
    def __init__(self, conn: psycopg.Connection[Any], schema: str, cluster: str) -> None:
        self.conn, self.cluster, self.schema = conn, cluster, schema
        self._s = sql.Identifier(schema)
        self._prepared: set[bytes] = set()

    @classmethod
    def connect(cls, dsn: str, schema: str, cluster: str, timeout: float,
                statement_timeout: float | None = None) -> Store:
        """A store on a new autocommit connection (psycopg.Error if it cannot)."""
        options = "" if statement_timeout is None else \
            f"-c statement_timeout={int(statement_timeout * 1000)}"
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=max(1, int(timeout)),
                               application_name=f"switchboard {cluster}", options=options)
        return cls(conn, schema, cluster)

    def close(self) -> None:
        self.conn.close()

    def _run(self, query: str, params: Any = None) -> psycopg.Cursor[Any]:
        return self.conn.execute(sql.SQL(query).format(s=self._s), params)

    def _exec(self, name: bytes, query: str, params: list[bytes]) -> pq.abc.PGresult:
        """A hot statement, prepared once per connection and run through libpq itself:
        half the client CPU of a cursor's execute (bench/cluster.py).  Only on a
        connection that does not LISTEN: a notification read here would not wake
        `Connection.notifies()`."""
        pgconn = self.conn.pgconn
        if name not in self._prepared:
            text = sql.SQL(query).format(s=self._s).as_bytes(self.conn)
            _check(pgconn.prepare(name, text), self.conn)
            self._prepared.add(name)
        return _check(pgconn.exec_prepared(name, params), self.conn)

    # -- schema and membership ----------------------------------------------------------

    def migrate(self) -> None:
        """Create the schema objects if missing; SchemaError if they are newer than us."""
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._run(statement)
            row = self._run("SELECT max(version) FROM {s}.schema_version").fetchone()
            found = row[0] if row else None
            if found is None:
                self._run("INSERT INTO {s}.schema_version VALUES (%s)", (VERSION,))
            elif found > VERSION:
                raise SchemaError(f"schema version {found} is newer than this "
                                  f"Switchboard's ({VERSION}); upgrade this node")

    def join(self, node: str, host: str, pid: int) -> None:
        self._run("INSERT INTO {s}.nodes (cluster, node, host, pid, heartbeat) "
                  "VALUES (%s, %s, %s, %s, now()) ON CONFLICT (cluster, node) DO UPDATE "
                  "SET host = excluded.host, pid = excluded.pid, joined = now(), "
                  "heartbeat = now(), left_at = NULL", (self.cluster, node, host, pid))

    def hold_node(self, node: str) -> bool:
        """Take the session lock that says `node` runs; False if another live session
        holds it (an instance with the same node name is running)."""
        row = self.conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                                (_NODE, f"{self.schema}/{self.cluster}/{node}")).fetchone()
        return bool(row and row[0])

    def where(self, node: str) -> str:
        """Where `node` last said it runs: "host H, pid P"."""
        row = self._run("SELECT host, pid FROM {s}.nodes WHERE cluster = %s AND node = %s",
                        (self.cluster, node)).fetchone()
        return f"host {row[0]}, pid {row[1]}" if row else "unknown"

    def heartbeat(self, node: str) -> None:
        self._run("UPDATE {s}.nodes SET heartbeat = now(), left_at = NULL "
                  "WHERE cluster = %s AND node = %s", (self.cluster, node))

    def leave(self, node: str) -> None:
        self._run("UPDATE {s}.nodes SET left_at = now() WHERE cluster = %s AND node = %s",
                  (self.cluster, node))

    def members(self, silence: float) -> list[tuple[str, float]]:
        """(node, last heartbeat as Unix time) of each member heard within `silence` s."""
        rows = self._run(
            "SELECT node, extract(epoch FROM heartbeat)::float8 FROM {s}.nodes "
            "WHERE cluster = %s AND left_at IS NULL AND heartbeat > now() - make_interval("
            "secs => %s) ORDER BY node", (self.cluster, silence)).fetchall()
        return [(r[0], r[1]) for r in rows]

    # -- signals ------------------------------------------------------------------------

    def send_batch(self, raises: list[Raise], silence: float) -> list[int]:
        """Store many raises and wake their nodes in one transaction (a group commit);
        for each raise, how many nodes it will run on (0: no such node ever joined).

        A raise for "*" goes to every member heard within `silence` s.  Rows are
        inserted in the order given, so a raiser's signals keep their order."""
        wakes = sorted({(r.channel, r.node) for r in raises})
        res = self._exec(b"sb_send", _SEND, [
            str(silence).encode(), self.cluster.encode(),
            _array(r.node for r in raises).encode(), _array(r.num for r in raises).encode(),
            _array(r.sender for r in raises).encode(), _array(r.key for r in raises).encode(),
            _array(c for c, _ in wakes).encode(), _array(n for _, n in wakes).encode()])
        rows = [(res.get_value(i, 0), res.get_value(i, 1)) for i in range(res.ntuples)]
        known = {bytes(row[0] or b"").decode() for row in rows}
        live = sum(1 for row in rows if row[1] == b"t")
        return [live if r.node == "*" else int(r.node in known) for r in raises]

    def claim(self, node: str, token: uuid.UUID, limit: int, ttl: float,
              acked: list[int]) -> list[tuple[int, int, bool]]:
        """Delete the `acked` rows and mark up to `limit` waiting signals for `node` as
        taken by `token`, in one transaction; (id, num, expired) in the order raised."""
        rows = self._run(
            "WITH acked AS (DELETE FROM {s}.signals WHERE id = ANY(%s::bigint[])) "
            "UPDATE {s}.signals SET taken_by = %s WHERE id IN (SELECT id FROM {s}.signals "
            "WHERE cluster = %s AND node = %s AND taken_by IS NULL ORDER BY id LIMIT %s "
            "FOR UPDATE SKIP LOCKED) "
            "RETURNING id, num, raised < now() - make_interval(secs => %s)",
            (_array(acked), token, self.cluster, node, limit, ttl)).fetchall()
        return sorted((r[0], r[1], r[2]) for r in rows)

    def taken(self, token: uuid.UUID) -> list[tuple[int, int, bool]]:
        """Signals `token` took and nobody deleted (after a lost reply)."""
        rows = self._run("SELECT id, num, false FROM {s}.signals WHERE taken_by = %s",
                         (token,)).fetchall()
        return sorted((r[0], r[1], r[2]) for r in rows)

    def ack(self, ids: list[int]) -> None:
        """Forget signals the local master holds now."""
        self._run("DELETE FROM {s}.signals WHERE id = ANY(%s::bigint[])", (_array(ids),))

    def release(self, token: uuid.UUID) -> int:
        """Put back what `token` took and did not raise (a graceful stop)."""
        return self._run("UPDATE {s}.signals SET taken_by = NULL WHERE taken_by = %s",
                         (token,)).rowcount

    def forget_uncertain(self, node: str, token: uuid.UUID) -> list[int]:
        """Delete what an earlier run of `node` took and may have raised; their numbers."""
        rows = self._run("DELETE FROM {s}.signals WHERE cluster = %s AND node = %s AND "
                         "taken_by IS NOT NULL AND taken_by <> %s RETURNING num",
                         (self.cluster, node, token)).fetchall()
        return [r[0] for r in rows]

    def expire_absent(self, ttl: float) -> list[tuple[str, int]]:
        """Delete signals older than `ttl` waiting for a node that is not taking them."""
        rows = self._run(
            "DELETE FROM {s}.signals WHERE cluster = %s AND taken_by IS NULL "
            "AND raised < now() - make_interval(secs => %s) RETURNING node, num",
            (self.cluster, ttl)).fetchall()
        return [(r[0], r[1]) for r in rows]

    # -- unique fires -------------------------------------------------------------------

    def claim_fire(self, source: str, fire_at: float, node: str) -> bool:
        """True if this node is the one that raises `source`'s fire at `fire_at`."""
        return self._run("INSERT INTO {s}.fires (cluster, source, fire_at, node) "
                         "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                         (self.cluster, source, fire_at, node)).rowcount == 1

    def claim_fires(self, fires: list[tuple[str, float]], node: str
                    ) -> list[tuple[str, float]]:
        """Claim again fires another node released (one statement); the ones won."""
        rows = self._run("INSERT INTO {s}.fires (cluster, source, fire_at, node) "
                         "SELECT %s, f.source, f.fire_at, %s FROM unnest(%s::text[], "
                         "%s::float8[]) AS f(source, fire_at) ON CONFLICT DO NOTHING "
                         "RETURNING source, fire_at",
                         (self.cluster, node, [f[0] for f in fires],
                          [f[1] for f in fires])).fetchall()
        return [(r[0], r[1]) for r in rows]

    def release_fires(self, node: str, sources: list[str], count: int, within: float,
                      channel: str) -> list[float]:
        """Delete the latest `count` claims `node` holds for `sources` (made within
        `within` s) and wake every node to claim them again; their fire times."""
        rows = self._run(
            "WITH gone AS (DELETE FROM {s}.fires WHERE (cluster, source, fire_at) IN ("
            "SELECT cluster, source, fire_at FROM {s}.fires WHERE cluster = %s AND node = %s "
            "AND source = ANY(%s) AND claimed > now() - make_interval(secs => %s) "
            "ORDER BY fire_at DESC LIMIT %s) RETURNING fire_at) "
            "SELECT fire_at, pg_notify(%s, %s) FROM gone ORDER BY fire_at",
            (self.cluster, node, sources, within, count, channel, RELEASED)).fetchall()
        return [r[0] for r in rows]

    def prune_fires(self, keep: float) -> None:
        self._run("DELETE FROM {s}.fires WHERE cluster = %s AND claimed < now() - "
                  "make_interval(secs => %s)", (self.cluster, keep))
