"""Field-ownership merge: properties that must hold for any data (hypothesis)."""

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from hub.fingerprint import fingerprint
from hub.sync.merge import flatten, merge, unflatten

SYSTEMS = ["salesforce", "sap", "billing"]
FIELDS = ["legal_name", "tax_id", "payment_terms", "billing_address.city", "segment"]
OWNERS = {
    "legal_name": "salesforce",
    "tax_id": "sap",
    "payment_terms": "sap",
    "billing_address.city": "salesforce",
}  # segment unowned
values = st.one_of(st.none(), st.text(max_size=5), st.integers(-5, 5))
partials = st.dictionaries(st.sampled_from(FIELDS), values, min_size=1)
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def nested(flat: dict) -> dict:
    return unflatten(flat)


@given(st.dictionaries(st.sampled_from(FIELDS), values))
def test_flatten_unflatten_round_trip(flat: dict) -> None:
    assert flatten(unflatten(flat)) == {k: v for k, v in flat.items()}


ADDRESS = ["billing_address", "billing_address.city", "billing_address.street", "segment"]


@given(st.dictionaries(st.sampled_from(ADDRESS), values), st.randoms())
def test_unflatten_lets_nested_fields_win_over_their_parent_in_any_order(
    flat: dict, order: random.Random
) -> None:
    items = list(flat.items())
    order.shuffle(items)
    children = {k.split(".")[1]: v for k, v in flat.items() if k.startswith("billing_address.")}
    expected = {k: v for k, v in flat.items() if "." not in k}
    if children:
        expected["billing_address"] = children
    assert unflatten(dict(items)) == expected


@given(partials, partials, st.sampled_from(SYSTEMS), st.sampled_from(SYSTEMS))
def test_owner_always_wins_and_non_owner_changes_are_conflicts(
    first: dict, second: dict, sys1: str, sys2: str
) -> None:
    r1 = merge(None, None, nested(first), system=sys1, changed_at=T0, owners=OWNERS)
    r2 = merge(
        r1.data,
        r1.field_meta,
        nested(second),
        system=sys2,
        changed_at=T0 + timedelta(seconds=1),
        owners=OWNERS,
    )
    after = flatten(r2.data)
    before = flatten(r1.data)
    conflicts = {c.field for c in r2.conflicts}
    for name, value in second.items():
        owner = OWNERS.get(name)
        if owner == sys2 or owner is None:
            assert after[name] == value
            assert name not in conflicts
        elif before.get(name) is not None and not r1.field_meta[name].get("provisional"):
            assert after[name] == before[name]  # owned elsewhere: unchanged
            assert (name in conflicts) == (value != before[name])


@given(partials, st.sampled_from(SYSTEMS))
def test_merging_the_same_data_twice_changes_nothing(data: dict, system: str) -> None:
    r1 = merge(None, None, nested(data), system=system, changed_at=T0, owners=OWNERS)
    r2 = merge(r1.data, r1.field_meta, nested(data), system=system, changed_at=T0, owners=OWNERS)
    assert r2.changed == [] and r2.conflicts == []
    assert fingerprint(r2.data) == fingerprint(r1.data)
    assert r2.field_meta == r1.field_meta


@given(
    values.filter(lambda v: v is not None), values.filter(lambda v: v is not None), st.booleans()
)
def test_unowned_fields_newest_change_wins_in_any_arrival_order(
    a: object, b: object, a_first: bool
) -> None:
    updates = [("billing", a, T0), ("salesforce", b, T0 + timedelta(minutes=5))]
    if not a_first:
        updates.reverse()
    golden, meta = None, None
    for system, value, at in updates:
        r = merge(golden, meta, {"segment": value}, system=system, changed_at=at, owners=OWNERS)
        golden, meta = r.data, r.field_meta
    assert golden is not None and golden["segment"] == b


def test_newest_change_is_judged_as_an_instant_not_as_text() -> None:
    # 10:30+02:00 is 08:30 UTC: a change at 09:00 UTC is newer, though its text sorts first
    meta = {"segment": {"system": "billing", "at": "2026-01-01T10:30:00+02:00"}}

    def segment_after_a_change_at(hour: int) -> object:
        changed_at = datetime(2026, 1, 1, hour, 0, tzinfo=UTC)
        r = merge(
            {"segment": "smb"},
            meta,
            {"segment": "enterprise"},
            system="salesforce",
            changed_at=changed_at,
            owners=OWNERS,
        )
        return r.data["segment"]

    assert segment_after_a_change_at(9) == "enterprise"  # newer than 08:30 UTC
    assert segment_after_a_change_at(8) == "smb"  # older


def test_provisional_value_is_replaced_by_owner_without_conflict() -> None:
    r1 = merge(None, None, {"tax_id": "DE1"}, system="salesforce", changed_at=T0, owners=OWNERS)
    assert r1.field_meta["tax_id"] == {
        "system": "salesforce",
        "at": T0.isoformat(),
        "provisional": True,
    }
    r2 = merge(
        r1.data, r1.field_meta, {"tax_id": "DE2"}, system="sap", changed_at=T0, owners=OWNERS
    )
    assert r2.data["tax_id"] == "DE2" and r2.conflicts == []
    r3 = merge(
        r2.data,
        r2.field_meta,
        {"tax_id": "DE1"},
        system="salesforce",
        changed_at=T0 + timedelta(days=1),
        owners=OWNERS,
    )
    assert r3.data["tax_id"] == "DE2"
    assert [(c.field, c.owner, c.golden_value, c.system_value) for c in r3.conflicts] == [
        ("tax_id", "sap", "DE2", "DE1")
    ]


def test_fingerprint_ignores_key_order() -> None:
    assert fingerprint({"a": 1, "b": [1, {"c": 2, "d": 3}]}) == fingerprint(
        {"b": [1, {"d": 3, "c": 2}], "a": 1}
    )
    assert fingerprint({"a": 1}) != fingerprint({"a": "1"})


def test_merging_never_changes_the_callers_provenance() -> None:
    """merge() copies field_meta shallowly: each entry it changes is replaced, so the
    golden record's provenance the caller holds stays as it was."""
    meta = {"segment": {"system": "billing", "at": "2026-01-01T00:00:00+00:00"}}
    snapshot = {k: dict(v) for k, v in meta.items()}
    r = merge(
        {"segment": "smb"}, meta, {"segment": "enterprise"}, system="salesforce",
        changed_at=datetime(2026, 2, 1, tzinfo=UTC), owners=OWNERS,
    )  # fmt: skip
    assert r.field_meta["segment"]["system"] == "salesforce"
    assert meta == snapshot


@given(partials, st.sampled_from(SYSTEMS), st.booleans())
def test_a_first_copy_merges_as_the_field_by_field_walk_does(
    data: dict, system: str, flattened: bool
) -> None:
    """A record the hub does not hold yet takes the shortcut (no golden record); an empty
    golden record walks every field: the two agree on data, provenance and changes."""
    incoming = data if flattened else nested(data)
    kw = {"system": system, "changed_at": T0, "owners": OWNERS, "flattened": flattened}
    first = merge(None, None, incoming, **kw)
    walked = merge({}, None, incoming, **kw)
    assert first.data == walked.data
    assert first.field_meta == walked.field_meta
    assert list(first.field_meta) == list(walked.field_meta)
    assert first.changed == walked.changed and first.conflicts == walked.conflicts == []
