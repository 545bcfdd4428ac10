"""The data replication resources: ``sobjects/<Object>/updated`` (sObject Get Updated) and
``sobjects/<Object>/deleted`` (sObject Get Deleted).

Replication tools (and ``simple-salesforce``'s ``sf.Account.updated(start, end)`` and
``.deleted(start, end)``) ask these for the ids changed or deleted in a window, as the
real API answers:

- ``start`` and ``end`` are ISO 8601 date-times; the seconds are ignored (12:30:15 reads
  as 12:30:00 UTC); ``start`` must come before ``end``, else ``INVALID_REPLICATION_DATE``;
- updates are kept for 30 days, deletes (the recycle bin) for 15: a ``start`` older than
  that is ``INVALID_REPLICATION_DATE`` too;
- a record's change date is its ``SystemModstamp``, a delete's is the stamp of the delete;
- deletes are read from the delete log, not only the recycle bin: a record hard-deleted
  (Bulk API ``hardDelete``, an emptied recycle bin), which ``queryAll`` no longer finds,
  is listed too;
- ``latestDateCovered`` is ``end`` to the minute (no write is still in flight here);
- more than 600,000 ids is ``EXCEEDED_ID_LIMIT``.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sandbox.salesforce.errors import ApiError
from sandbox.salesforce.values import format_datetime, parse_datetime

#: the records (deleted ones too) stamped at or after a moment, read from the stamp index
#: as a real org answers these from its own: a scan of the object made every pass's
#: delete check cost as much as reading the whole book
Since = Callable[[dt.datetime], Iterable[dict[str, Any]]]

UPDATES_KEPT = dt.timedelta(days=30)
DELETES_KEPT = dt.timedelta(days=15)
ID_LIMIT = 600_000
RESOURCES = ("updated", "deleted")


def _minute(moment: dt.datetime) -> dt.datetime:
    return moment.replace(second=0, microsecond=0)


def _bad_date(message: str) -> ApiError:
    return ApiError(400, "INVALID_REPLICATION_DATE", message)


def window(
    params: dict[str, str], kept: dt.timedelta, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """The [start, end) window the request asks for, to the minute, or the API's error."""
    bounds = []
    for name in ("start", "end"):
        raw = params.get(name)
        if not raw:
            raise ApiError(400, "MISSING_ARGUMENT", f"{name} parameter is required")
        # a '+' sent unencoded in the query string arrives as a space
        moment = parse_datetime(raw.replace(" ", "+"))
        if moment is None:
            raise _bad_date(
                f"{name}: unable to parse '{raw}' as a date-time; "
                "expected the form 2024-05-06T10:30:00+00:00"
            )
        bounds.append(_minute(moment.astimezone(dt.UTC)))
    start, end = bounds
    if start >= end:
        raise _bad_date(f"start ({start.isoformat()}) must be before end ({end.isoformat()})")
    if start < _minute(now - kept):
        raise _bad_date(
            f"start ({start.isoformat()}) is more than {kept.days} days ago: "
            f"changes are kept for {kept.days} days"
        )
    return start, end


def _stamped(
    docs: Iterable[dict[str, Any]], deleted: bool, start: dt.datetime, end: dt.datetime
) -> Iterator[tuple[dict[str, Any], dt.datetime]]:
    """The live (or deleted) records whose last stamp falls in [start, end)."""
    for doc in docs:
        if bool(doc.get("IsDeleted")) != deleted:
            continue
        stamp = parse_datetime(str(doc.get("SystemModstamp") or ""))
        if stamp is not None and start <= stamp < end:
            yield doc, stamp


def _limited(found: list[Any]) -> list[Any]:
    if len(found) > ID_LIMIT:
        raise ApiError(
            400,
            "EXCEEDED_ID_LIMIT",
            f"{len(found)} ids match, more than the {ID_LIMIT:,} this resource returns: "
            "choose start and end dates closer together",
        )
    return found


def updated(
    since: Since,
    params: dict[str, str],
    now: dt.datetime,
) -> dict[str, Any]:
    """sObject Get Updated: the ids of live records added or changed in the window."""
    start, end = window(params, UPDATES_KEPT, now)
    found = [doc["Id"] for doc, _ in _stamped(since(start), False, start, end)]
    return {"ids": _limited(found), "latestDateCovered": format_datetime(end)}


def deleted(
    since: Since,
    params: dict[str, str],
    now: dt.datetime,
    purged: Iterable[dict[str, Any]] = (),
) -> dict[str, Any]:
    """sObject Get Deleted: the records deleted in the window, with when - those in the
    recycle bin (``IsDeleted``) and those purged from it (``purged``, the delete log's
    ``{Id, deletedDate}`` entries) - and the earliest date the log can still answer for."""
    start, end = window(params, DELETES_KEPT, now)
    docs = since(start)
    logged = (
        {"Id": e["Id"], "IsDeleted": True, "SystemModstamp": e["deletedDate"]} for e in purged
    )
    found = [
        {"id": doc["Id"], "deletedDate": format_datetime(stamp)}
        for doc, stamp in sorted(
            _stamped(itertools.chain(docs, logged), True, start, end), key=lambda d: d[1]
        )
    ]
    return {
        "deletedRecords": _limited(found),
        "earliestDateAvailable": format_datetime(_minute(now - DELETES_KEPT)),
        "latestDateCovered": format_datetime(end),
    }
