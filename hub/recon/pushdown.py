"""Comparing two SQL tables without moving their rows: segment checksums, then bisection.

The data-diff method. Each side computes, in its own database, a 32-bit hash per row and
per key segment ``count(*)`` and ``sum(hash)``; only the few numbers per segment cross
the wire. Segments that agree are done; segments that differ are split and checked again,
until a segment is small enough that fetching its ``(key, hash)`` pairs is cheaper than
another round trip. One full scan per side, then index range scans on the drifted parts.

Keys must be integers (the usual surrogate primary key; the range split needs
arithmetic). Hashes: CRC-32 when both sides are SQLite (a C function registered on the
connection), otherwise the first 32 bits of MD5 (native on PostgreSQL, a registered
function on SQLite) - the two sides must compute the same function over the same text.
Column values are hashed as their text form, so both sides need the same column types.
"""

# ruff: noqa: S608 - SQL is built from quoted identifiers and escaped literals; values
# that come from callers are bound parameters.

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

NULL_MARK = "\x1e"  # stands for NULL in the hashed text (a NULL is not an empty string)


def _md5_32(value: bytes | str | None) -> int | None:
    if value is None:
        return None
    data = value.encode() if isinstance(value, str) else value
    return int.from_bytes(hashlib.md5(data, usedforsecurity=False).digest()[:4], "big")


@dataclass(frozen=True)
class SqlTable:
    """One side: a table (name or ``sa.Table``) in a database, its integer key column and
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
    rows_total: int = 0

    @property
    def bytes_moved(self) -> int:
        """Rough wire volume: 24 bytes per segment checksum, 16 per (key, hash) pair."""
        return 24 * self.segments_checked + 16 * self.rows_fetched


class _Side:
    def __init__(self, spec: SqlTable, hash_fn: str) -> None:
        self.spec = spec
        self.dialect = spec.engine.dialect.name
        self.conn = spec.engine.connect()
        if self.dialect == "sqlite":
            raw: Any = self.conn.connection.driver_connection
            raw.create_function("hub_crc32", 1, zlib.crc32, deterministic=True)
            raw.create_function("hub_md5_32", 1, _md5_32, deterministic=True)
        prep = spec.engine.dialect.identifier_preparer
        self.table = prep.quote(spec.table)
        self.key = prep.quote(spec.key)
        self.hash = self._hash_sql(hash_fn, [prep.quote(c) for c in spec.columns])

    def _hash_sql(self, fn: str, cols: list[str]) -> str:
        if self.dialect == "sqlite":
            text = " || '|' || ".join(f"ifnull(CAST({c} AS TEXT), '{NULL_MARK}')" for c in cols)
            if fn == "crc32":
                return f"hub_crc32(CAST({text} AS BLOB))"
            return f"hub_md5_32(CAST({text} AS BLOB))"
        if self.dialect == "postgresql":
            text = " || '|' || ".join(f"coalesce(CAST({c} AS TEXT), '{NULL_MARK}')" for c in cols)
            return f"(('x' || substr(md5({text}), 1, 8))::bit(32)::bigint)"
        raise NotImplementedError(f"hash pushdown for {self.dialect} is not implemented")

    def run(self, sql: str, **params: Any) -> list[Any]:
        return list(self.conn.execute(sa.text(sql), params).all())

    def bounds(self) -> tuple[int | None, int | None, int]:
        lo, hi, n = self.run(
            f"SELECT min({self.key}), max({self.key}), count(*) FROM {self.table}"
        )[0]
        return lo, hi, n

    def segments(self, lo: int, hi: int, width: int) -> dict[int, tuple[int, int]]:
        rows = self.run(
            f"SELECT ({self.key} - :lo) / :w AS b, count(*), sum({self.hash}) FROM {self.table} "
            f"WHERE {self.key} BETWEEN :lo AND :hi GROUP BY 1",
            lo=lo,
            hi=hi,
            w=width,
        )
        return {int(b): (int(n), int(s or 0)) for b, n, s in rows}

    def pairs(self, ranges: Sequence[tuple[int, int]]) -> dict[int, int]:
        """(key, hash) of every row in ``ranges``: one query per 200 ranges."""
        out: dict[int, int] = {}
        for start in range(0, len(ranges), 200):
            chunk = ranges[start : start + 200]
            # UNION ALL of range scans: an OR of ranges makes SQLite scan the whole table
            sql = " UNION ALL ".join(
                f"SELECT {self.key}, {self.hash} FROM {self.table} "
                f"WHERE {self.key} BETWEEN :lo{i} AND :hi{i}"
                for i in range(len(chunk))
            )
            params = {f"lo{i}": lo for i, (lo, _) in enumerate(chunk)}
            params.update({f"hi{i}": hi for i, (_, hi) in enumerate(chunk)})
            rows = self.run(sql, **params)
            out.update((int(k), int(h)) for k, h in rows)
        return out

    def close(self) -> None:
        self.conn.close()


def hashdiff(
    a: SqlTable, b: SqlTable, *, fanout: int = 64, leaf_rows: int = 32, first_rows: int = 512
) -> HashDiff:
    """Keys that differ between ``a`` and ``b``, found by segment checksums.

    The first pass splits the key range into segments of about ``first_rows`` rows (one
    scan; thousands of checksums cost kilobytes), later passes split a differing segment
    into ``fanout`` (index range scans). A
    differing segment of at most ``2 * leaf_rows`` rows on each side is settled by fetching its
    (key, hash) pairs, all such segments together in a few queries."""
    fn = "crc32" if a.engine.dialect.name == b.engine.dialect.name == "sqlite" else "md5"
    sa_, sb = _Side(a, fn), _Side(b, fn)
    out = HashDiff()
    pool = ThreadPoolExecutor(2)
    leaves: list[tuple[int, int]] = []
    try:
        (alo, ahi, an), (blo, bhi, bn) = pool.map(lambda s: s.bounds(), (sa_, sb))
        out.queries += 2
        out.rows_total = an + bn
        los = [v for v in (alo, blo) if v is not None]
        if not los:
            return out
        his = [v for v in (ahi, bhi) if v is not None]
        work = [(min(los), max(his), max(an, bn))]
        first = True
        while work:
            lo, hi, rows = work.pop()
            if rows <= 2 * leaf_rows or lo == hi:
                leaves.append((lo, hi))
                continue
            parts = max(fanout, rows // first_rows) if first else fanout
            first = False
            width = max(1, -(-(hi - lo + 1) // parts))
            ga, gb = pool.map(lambda s, lo=lo, hi=hi, w=width: s.segments(lo, hi, w), (sa_, sb))
            out.queries += 2
            out.segments_checked += len(ga) + len(gb)
            for bucket in sorted(set(ga) | set(gb)):
                ca, cb = ga.get(bucket, (0, 0)), gb.get(bucket, (0, 0))
                if ca != cb:
                    seg_lo = lo + bucket * width
                    work.append((seg_lo, min(hi, seg_lo + width - 1), max(ca[0], cb[0])))
        leaves.sort()
        pa_, pb = pool.map(lambda s: s.pairs(leaves), (sa_, sb))
        out.queries += 2 * -(-len(leaves) // 200)
        out.rows_fetched += len(pa_) + len(pb)
        _settle(pa_, pb, out)
    finally:
        pool.shutdown()
        sa_.close()
        sb.close()
    out.only_a.sort()
    out.only_b.sort()
    out.differing.sort()
    return out


def _settle(pa_: dict[int, int], pb: dict[int, int], out: HashDiff) -> None:
    for k, h in pa_.items():
        other = pb.get(k)
        if other is None:
            out.only_a.append(k)
        elif other != h:
            out.differing.append(k)
    out.only_b.extend(k for k in pb if k not in pa_)
