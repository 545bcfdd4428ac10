"""Mappings are lossless: for every mapping file in the repo, any normalised system record
maps to canonical and back to exactly the same system values (hypothesis)."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.currency import EXPONENTS, exponent
from hub.mapping.mapper import Mapper, MappingValueError
from hub.mapping.spec import MAPPINGS_DIR, FieldMap, MappingSpec, load_all
from hub.mapping.transforms import load_code_lists

SPECS, ERRORS = load_all(MAPPINGS_DIR)
CODES = load_code_lists(MAPPINGS_DIR)
CURRENCIES = sorted(EXPONENTS)
text = st.text(
    alphabet=st.characters(categories=("L", "N"), max_codepoint=0x2FFF), min_size=1, max_size=30
)
#: a dunning history as Salesforce holds it: one event per line (no events: null)
dunning_history = st.lists(
    st.tuples(
        st.dates(),
        st.integers(1, 4),
        st.sampled_from(["", " retried", " paid", " written_off"]),
    ),
    max_size=5,
).map(lambda events: "\n".join(f"{d} stage {n}{o}" for d, n, o in events) or None)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
)


def native_value(fmap: FieldMap, currency: str) -> st.SearchStrategy[Any]:
    chain = fmap.transform
    if "money_decimal" in chain:
        exp = exponent(currency)
        return st.integers(0, 10**12).map(
            lambda n: str(Decimal(n).scaleb(-exp).quantize(Decimal(1).scaleb(-exp)))
        )
    if "code" in chain:
        return st.sampled_from(sorted(CODES[fmap.codes or ""].values()))
    if "date" in chain:
        return st.dates().map(lambda d: d.isoformat())
    if "datetime" in chain:
        fmt = fmap.datetime_format
        if fmt == "salesforce":
            return moments.map(
                lambda m: m.strftime("%Y-%m-%dT%H:%M:%S.") + f"{m.microsecond // 1000:03d}+0000"
            )
        if fmt == "akeneo":
            return moments.map(lambda m: m.replace(microsecond=0).isoformat())
        return moments.map(lambda m: m.isoformat())
    if "int" in chain:
        return st.integers(-(10**9), 10**9)
    if "bool" in chain:
        return st.booleans()
    if "dunning_history" in chain:
        return dunning_history
    base = text  # already normalised: trim/upper/lower are lossy on anything else
    if "upper" in chain:
        base = text.map(str.upper).filter(lambda t: t == t.upper().strip())
    if "lower" in chain:
        base = text.map(str.lower).filter(lambda t: t == t.lower().strip())
    if "akeneo_value" in chain:
        return base.map(lambda t: [{"locale": None, "scope": None, "data": t}])
    return base


@st.composite
def native_records(draw: st.DrawFn, spec: MappingSpec) -> dict[str, Any]:
    currency = draw(st.sampled_from(CURRENCIES))
    record: dict[str, Any] = {}
    for name, fmap in spec.fields.items():
        value = currency if name == "currency" else draw(native_value(fmap, currency))
        parts = fmap.field.split(".")
        target = record
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    if spec.key.hub_id_field:
        record[spec.key.hub_id_field] = draw(st.from_regex(r"C-[0-9]{6}", fullmatch=True))
    return record


def test_repo_mappings_are_valid() -> None:
    assert ERRORS == []
    assert SPECS


class PrefixResolver:
    """A reversible stand-in for the xref table: hub id = "H:" + the system's id."""

    def to_hub(self, entity: str, system: str, external_id: str) -> str | None:
        return f"H:{external_id}"

    def to_system(self, entity: str, system: str, hub_id: str) -> str | None:
        return hub_id.removeprefix("H:")


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.system}-{s.entity}")
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_trip_is_lossless(spec: MappingSpec, data: st.DataObject) -> None:
    native = data.draw(native_records(spec))
    mapper = Mapper(spec, CODES, PrefixResolver())
    context = {"currency": native.get("CurrencyIsoCode", "EUR")}
    canonical = mapper.to_canonical(native, context)
    back = mapper.to_native({**context, **canonical})
    for name, fmap in spec.fields.items():
        if fmap.read_only:
            continue
        original = native
        for part in fmap.field.split("."):
            original = original[part]
        again = back
        for part in fmap.field.split("."):
            again = again[part]
        assert again == original, (name, original, again)


def test_bad_values_name_every_field() -> None:
    spec = next(s for s in SPECS if s.system == "salesforce" and s.entity == "customer")
    mapper = Mapper(spec, CODES)
    with pytest.raises(MappingValueError) as info:
        mapper.to_canonical(
            {"Hub_Id__c": "C-1", "Name": "A", "Segment__c": "Galactic", "Dunning_Level__c": "x"}
        )
    fields = {p.field for p in info.value.problems}
    assert fields == {"segment", "dunning_level"}
    assert str(info.value).startswith("salesforce customer C-1: field 'segment': unknown code")
