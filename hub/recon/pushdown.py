"""Comparing two SQL tables without moving their rows: segment checksums, then bisection.

The data-diff method. Each side computes, in its own database, a hash per row and per key
segment ``count(*)`` and ``sum(hash)``; only the few numbers per segment cross the wire.
The first pass is one ``GROUP BY (key - lo) / width`` scan per side over the whole table;
segments that agree are done; segments that differ are split again (all differing segments
of a level in one batched query per side: index range scans), until a segment is small
enough that fetching its ``(key, hash)`` pairs is cheaper than another level.

Keys must be integers (the usual surrogate primary key; the range split needs
arithmetic). The two sides must compute the same hash, so the function is chosen per pair
of dialects:

- PostgreSQL - PostgreSQL: native 64-bit hashes, no text: each column through its type's
  extended hash function (``hashtextextended``, ``hashint8extended``,
  ``hash_numeric_extended``, ``timestamp_hash_extended``, ...; a distinct seed per column
  position, a NULL stands for a fixed constant), XOR-ed and mixed once more by
  ``hashint8extended`` so that sums over rows do not cancel linearly. Integer columns of any
  width hash alike; timestamps with time zone hash as UTC, so session time zones do not
  matter. Sums are ``sum(bigint)``: exact ``numeric``, no overflow.
- SQLite - SQLite: CRC-32 of the row's text (a C function registered on the connection).
- mixed: the first 32 bits of MD5 of the row's text (native on PostgreSQL, registered on
  SQLite). Column values are hashed as their text form, so both sides need the same
  column types.
"""

# ruff: noqa: S608 - SQL is built from quoted identifiers and escaped literals; values
# that come from callers are bound parameters.

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

NULL_MARK = "\x1e"  # stands for NULL in the hashed text (a NULL is not an empty string)
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")  # :name, not ::type
BATCH = 200  # ranges per UNION ALL query on SQLite (PostgreSQL takes them all as arrays)

# PostgreSQL type name -> SQL over ``{c}`` (the quoted column) and ``{s}`` (its seed).
_PG_HASH = {
    **dict.fromkeys(("int2", "int4", "int8", "oid"), "hashint8extended({c}::int8, {s})"),
    **dict.fromkeys(("text", "varchar", "bpchar", "name"), "hashtextextended({c}::text, {s})"),
    "numeric": "hash_numeric_extended({c}, {s})",
    **dict.fromkeys(("float4", "float8"), "hashfloat8extended({c}::float8, {s})"),
    "bool": "hashint8extended({c}::int::int8, {s})",
    "date": "timestamp_hash_extended({c}::timestamp, {s})",
    "timestamp": "timestamp_hash_extended({c}, {s})",
    "timestamptz": "timestamp_hash_extended({c} AT TIME ZONE 'UTC', {s})",
    "time": "time_hash_extended({c}, {s})",
    "interval": "interval_hash_extended({c}, {s})",
    "uuid": "uuid_hash_extended({c}, {s})",
    "jsonb": "jsonb_hash_extended({c}, {s})",
}
_PG_TEXT_HASH = "hashtextextended({c}::text, {s})"
# the ranges of a batched query, as two bound arrays (one query, any number of ranges)
_PG_RANGES = (
    "unnest(CAST(:los AS bigint[]), CAST(:his AS bigint[])) WITH ORDINALITY AS r(lo, hi, i)"
)


def _md5_32(value: bytes | str | None) -> int | None:
    if value is None:
        return None
    data = value.encode() if isinstance(value, str) else value
    return int.from_bytes(hashlib.md5(data, usedforsecurity=False).digest()[:4], "big")


def hash_function(a: str, b: str) -> str:
    """The row hash both dialects can compute: ``pg64``, ``crc32`` or ``md5``."""
    if a == b == "postgresql":
        return "pg64"
    if a == b == "sqlite":
        return "crc32"
    return "md5"


@dataclass(frozen=True)
class SqlTable:
    """One side: a table (by name) in a database, its integer key column and
    the columns whose values must agree."""

    engine: Engine
    table: str
    key: str
    columns: Sequence[str]


@dataclass
class HashDiff:
    """Keys only on side a, only on side b, and on both with differing values, plus what
    the comparison cost."""

    only_a: list[int] = field(default_factory=list)
    only_b: list[int] = field(default_factory=list)
    differing: list[int] = field(default_factory=list)
    queries: int = 0
    segments_checked: int = 0
    rows_fetched: int = 0
    rows_total: int = 0  # both sides; PostgreSQL pairs: the planner's estimate (no count)
    hash: str = ""
    levels: int = 0

    @property
    def bytes_moved(self) -> int:
        """Rough wire volume: 24 bytes per segment checksum, 16 per (key, hash) pair."""
        return 24 * self.segments_checked + 16 * self.rows_fetched


Range = tuple[int, int]
Seg = tuple[int, int, int]  # lo, hi, width of its sub-segments
Sum = tuple[int, ...]  # a segment's checksum: row count, then hash sum(s)


class _Side:
    def __init__(self, spec: SqlTable, hash_fn: str) -> None:
        self.spec = spec
        self.dialect = spec.engine.dialect.name
        self.conn = spec.engine.connect()
        raw: Any = self.conn.connection.driver_connection
        self.raw = raw
        self.queries = 0
        self.fn = hash_fn
        if self.dialect == "sqlite":
            self.raw.create_function("hub_crc32", 1, zlib.crc32, deterministic=True)
            self.raw.create_function("hub_md5_32", 1, _md5_32, deterministic=True)
        elif self.dialect == "postgresql":
            # transaction-local (the pooled connection keeps its settings): a hash
            # aggregate in memory instead of a spilling sort for the first pass
            self.run(
                "SELECT set_config('work_mem', '256MB', true), "
                "set_config('enable_sort', 'off', true)"
            )
        prep = spec.engine.dialect.identifier_preparer
        self.table = prep.quote(spec.table)
        # every query names the table ``t``: columns stay unambiguous next to ``r``
        self.key = "t." + prep.quote(spec.key)
        self.hash = self._hash_sql(hash_fn, ["t." + prep.quote(c) for c in spec.columns])
        # the first pass on PostgreSQL pairs skips count(*) (~8% of the scan): a segment's
        # rows are then bounded by its key width (keys are unique)
        self.counts_first = hash_fn != "pg64"

    def _hash_sql(self, fn: str, cols: list[str]) -> str:
        if fn == "pg64":
            types = self._pg_types()
            parts = []
            for seed, (name, col) in enumerate(zip(self.spec.columns, cols, strict=True), 1):
                expr = _PG_HASH.get(types.get(name, ""), _PG_TEXT_HASH).format(c=col, s=seed)
                parts.append(f"coalesce({expr}, {seed})")
            # the key too: values swapped between two keys of one segment must show
            parts.append(f"hashint8extended({self.key}::int8, {len(cols) + 1})")
            return f"hashint8extended({' # '.join(parts)}, 0)"
        if self.dialect == "sqlite":
            text = " || '|' || ".join(
                [f"CAST({self.key} AS TEXT)"]
                + [f"ifnull(CAST({c} AS TEXT), '{NULL_MARK}')" for c in cols]
            )
            if fn == "crc32":
                return f"hub_crc32(CAST({text} AS BLOB))"
            return f"hub_md5_32(CAST({text} AS BLOB))"
        if self.dialect == "postgresql":
            text = " || '|' || ".join(
                [f"CAST({self.key} AS TEXT)"]
                + [f"coalesce(CAST({c} AS TEXT), '{NULL_MARK}')" for c in cols]
            )
            return f"(('x' || substr(md5({text}), 1, 8))::bit(32)::bigint)"
        raise NotImplementedError(f"hash pushdown for {self.dialect} is not implemented")

    def _pg_types(self) -> dict[str, str]:
        rows = self.run(
            "SELECT a.attname, coalesce(nullif(bt.typname, ''), t.typname) FROM pg_attribute a "
            "JOIN pg_type t ON t.oid = a.atttypid "
            "LEFT JOIN pg_type bt ON bt.oid = t.typbasetype "
            "WHERE a.attrelid = to_regclass(:t) AND a.attnum > 0 AND NOT a.attisdropped",
            t=self.table,
        )
        if not rows:
            raise LookupError(f"table {self.spec.table} not found")
        return {str(n): str(t) for n, t in rows}

    def run(self, sql: str, **params: Any) -> list[Any]:
        """Rows as plain tuples from the DB-API cursor (a third of the cost of building
        SQLAlchemy rows, which matters for the first pass's many segments)."""
        self.queries += 1
        if self.dialect == "postgresql":  # psycopg2 binds %(name)s, not :name
            sql = _PARAM.sub(r"%(\1)s", sql)
        cur = self.raw.cursor()
        try:
            cur.execute(sql, params)
            return list(cur.fetchall())
        finally:
            cur.close()

    def bounds(self) -> tuple[int | None, int | None, int]:
        """min and max key (index endpoints) and the row count - exact on SQLite (cheap
        there), the planner's estimate on PostgreSQL (a count would cost a scan)."""
        lo, hi = self.run(f"SELECT min({self.key}), max({self.key}) FROM {self.table} t")[0]
        if self.dialect == "postgresql":
            est = self.run(
                "SELECT reltuples FROM pg_class WHERE oid = to_regclass(:t)", t=self.table
            )
            if est and est[0][0] is not None and est[0][0] > 0:
                return lo, hi, int(est[0][0])
        (n,) = self.run(f"SELECT count(*) FROM {self.table} t")[0]
        return lo, hi, int(n)

    def _checksums(
        self, groups: Sequence[str], source: str, counted: bool = True, **params: Any
    ) -> list[Any]:
        """``SELECT groups..., count(*), sum(hash)... {source} GROUP BY groups``; the
        count is -1 (unknown) unless ``counted``.

        For the 64-bit hash the sum is of its two signed 32-bit halves as ``int4``: two
        by-value ``int8`` accumulators (no overflow below 2^32 rows per segment), cheaper
        than ``sum(int8)``'s 128-bit state and read back as plain integers. ``OFFSET 0``
        keeps PostgreSQL from computing the hash twice."""
        names = ", ".join(f"g{i}" for i in range(len(groups)))
        inner = ", ".join(f"{g} AS g{i}" for i, g in enumerate(groups))
        n = "count(*)" if counted else "-1"
        if self.fn == "pg64":
            return self.run(
                f"SELECT {names}, {n}, sum((h >> 32)::int4), sum(((h << 32) >> 32)::int4) "
                f"FROM (SELECT {inner}, {self.hash} AS h {source} OFFSET 0) x GROUP BY {names}",
                **params,
            )
        return self.run(
            f"SELECT {names}, {n}, CAST(sum(h) AS BIGINT) "
            f"FROM (SELECT {inner}, {self.hash} AS h {source}) x "
            f"GROUP BY {names}",
            **params,
        )

    def first_pass(self, lo: int, width: int) -> dict[int, Sum]:
        """Checksums of every segment ``lo + b * width ...``: one grouped scan."""
        rows = self._checksums(
            [f"({self.key} - :lo) / :w"],
            f"FROM {self.table} t",
            counted=self.counts_first,
            lo=lo,
            w=width,
        )
        if self.dialect == "postgresql":
            # the range scans that follow are cheap: no JIT compile for them
            self.run("SELECT set_config('jit', 'off', true)")
        return {r[0]: tuple(r[1:]) for r in rows}

    def split(self, segs: Sequence[Seg]) -> dict[tuple[int, int], Sum]:
        """Checksums of the sub-segments of each ``(lo, hi, width)``: {(seg, b): sum}."""
        out: dict[tuple[int, int], Sum] = {}
        if self.dialect == "postgresql":
            rows = self._checksums(
                ["r.i - 1", f"({self.key} - r.lo) / r.w"],
                "FROM unnest(CAST(:los AS bigint[]), CAST(:his AS bigint[]), "
                "CAST(:ws AS bigint[])) WITH ORDINALITY AS r(lo, hi, w, i) "
                f"JOIN {self.table} t ON {self.key} BETWEEN r.lo AND r.hi",
                los=[lo for lo, _, _ in segs],
                his=[hi for _, hi, _ in segs],
                ws=[w for _, _, w in segs],
            )
            for r in rows:
                out[r[0], r[1]] = tuple(r[2:])
            return out
        for start in range(0, len(segs), BATCH):
            chunk = segs[start : start + BATCH]
            # UNION ALL of range scans: an OR of ranges makes SQLite scan the whole table
            sql = " UNION ALL ".join(
                f"SELECT {start + i}, ({self.key} - :lo{i}) / :w{i}, count(*), sum({self.hash}) "
                f"FROM {self.table} t WHERE {self.key} BETWEEN :lo{i} AND :hi{i} GROUP BY 2"
                for i in range(len(chunk))
            )
            params = _range_params([(lo, hi) for lo, hi, _ in chunk])
            params.update({f"w{i}": w for i, (_, _, w) in enumerate(chunk)})
            for r in self.run(sql, **params):
                out[r[0], r[1]] = tuple(r[2:])
        return out

    def pairs(self, ranges: Sequence[Range]) -> dict[int, int]:
        """(key, hash) of every row in ``ranges``."""
        out: dict[int, int] = {}
        if not ranges:
            return out
        if self.dialect == "postgresql":
            rows = self.run(
                f"SELECT {self.key}, {self.hash} FROM {_PG_RANGES} JOIN {self.table} t "
                f"ON {self.key} BETWEEN r.lo AND r.hi",
                los=[lo for lo, _ in ranges],
                his=[hi for _, hi in ranges],
            )
            out.update(rows)
            return out
        for start in range(0, len(ranges), BATCH):
            chunk = ranges[start : start + BATCH]
            sql = " UNION ALL ".join(
                f"SELECT {self.key}, {self.hash} FROM {self.table} t "
                f"WHERE {self.key} BETWEEN :lo{i} AND :hi{i}"
                for i in range(len(chunk))
            )
            rows = self.run(sql, **_range_params(chunk))
            out.update(rows)
        return out

    def close(self) -> None:
        self.conn.close()


def _range_params(chunk: Sequence[Range]) -> dict[str, int]:
    params = {f"lo{i}": lo for i, (lo, _) in enumerate(chunk)}
    params.update({f"hi{i}": hi for i, (_, hi) in enumerate(chunk)})
    return params


def hashdiff(
    a: SqlTable, b: SqlTable, *, fanout: int = 64, leaf_rows: int = 32, first_rows: int = 32
) -> HashDiff:
    """Keys that differ between ``a`` and ``b``, found by segment checksums.

    The first pass splits the key range into segments of about ``first_rows`` rows (one
    grouped scan per side; a checksum per segment is 24 bytes against the segment's rows),
    later levels split every differing segment into sub-segments of about ``leaf_rows / 4``
    rows, at most ``fanout`` of them (one batched query of index range scans per side and
    level). A differing segment of at most ``2 * leaf_rows`` rows on each side is settled
    by fetching its (key, hash) pairs, all such segments together.
    """
    fn = hash_function(a.engine.dialect.name, b.engine.dialect.name)
    out = HashDiff(hash=fn)
    pool = ThreadPoolExecutor(2)
    sides: list[_Side] = []
    try:
        sides.extend(_Side(s, fn) for s in (a, b))
        bounds = [(lo, hi, n) for lo, hi, n in pool.map(lambda s: s.bounds(), sides)]
        filled = [(lo, hi, max(1, n)) for lo, hi, n in bounds if lo is not None and hi is not None]
        if not filled:
            return out
        lo, hi = min(f[0] for f in filled), max(f[1] for f in filled)
        # keys per row on the denser side: first-pass segments of about first_rows rows
        # where the keys are dense, even if the other side has a sparse tail of new keys
        keys_per_row = min((top - bot + 1) / n for bot, top, n in filled)
        width = max(1, min(hi - lo + 1, round(first_rows * max(1.0, keys_per_row))))
        ga, gb = pool.map(lambda s: s.first_pass(lo, width), sides)
        out.levels = 1
        if all(s.counts_first for s in sides):
            out.rows_total = sum(c[0] for c in ga.values()) + sum(c[0] for c in gb.values())
        else:
            out.rows_total = sum(n for _, _, n in bounds)
        out.segments_checked += len(ga) + len(gb)
        work: list[tuple[Range, int]] = []  # differing segments: (range, rows on the bigger side)
        for bucket in _differing(ga, gb):
            seg_lo = lo + bucket * width
            top = min(hi, seg_lo + width - 1)
            work.append(((seg_lo, top), _rows(ga, gb, bucket, top - seg_lo + 1)))
        leaves: list[Range] = []
        child_rows = max(1, leaf_rows // 4)
        while work:
            split: list[Seg] = []
            for (bot, top), rows in work:
                if rows <= 2 * leaf_rows or bot == top:
                    leaves.append((bot, top))
                else:
                    # about child_rows rows per sub-segment, at most fanout of them
                    parts = min(fanout, -(-rows // child_rows))
                    split.append((bot, top, max(1, -(-(top - bot + 1) // parts))))
            work = []
            if not split:
                break
            sa_, sb_ = pool.map(lambda s, r=split: s.split(r), sides)
            out.levels += 1
            out.segments_checked += len(sa_) + len(sb_)
            for i, bucket in _differing(sa_, sb_):
                bot, top, w = split[i]
                seg_lo = bot + bucket * w
                end = min(top, seg_lo + w - 1)
                work.append(((seg_lo, end), _rows(sa_, sb_, (i, bucket), end - seg_lo + 1)))
        leaves.sort()
        pa_, pb = pool.map(lambda s: s.pairs(leaves), sides)
        out.rows_fetched += len(pa_) + len(pb)
        _settle(pa_, pb, out)
    finally:
        out.queries = sum(s.queries for s in sides)
        pool.shutdown()
        for s in sides:
            s.close()
    out.only_a.sort()
    out.only_b.sort()
    out.differing.sort()
    return out


def _differing(ga: dict[Any, Sum], gb: dict[Any, Sum]) -> list[Any]:
    """Segments whose checksums differ (or that one side lacks), in key order."""
    out = [k for k, c in ga.items() if gb.get(k) != c]
    out.extend(k for k in gb if k not in ga)
    return sorted(out)


def _rows(ga: dict[Any, Sum], gb: dict[Any, Sum], k: Any, width: int) -> int:
    """Rows of a segment on its bigger side; its key width where a side did not count."""
    counts = [c[0] for c in (ga.get(k), gb.get(k)) if c is not None]
    return width if any(n < 0 for n in counts) else max(counts, default=0)


def _settle(pa_: dict[int, int], pb: dict[int, int], out: HashDiff) -> None:
    for k, h in pa_.items():
        other = pb.get(k)
        if other is None:
            out.only_a.append(k)
        elif other != h:
            out.differing.append(k)
    out.only_b.extend(k for k in pb if k not in pa_)
