from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.model import (
    ENTITIES,
    CanonicalValidationError,
    Customer,
    Invoice,
    Price,
    dump_utc_datetime,
    validate_record,
)
from tests.unit.strategies import (
    INVALID,
    VALID,
    customers,
    invoices,
    subscriptions,
    utc_times,
)


@pytest.mark.parametrize("entity", sorted(VALID))
@given(data=st.data())
def test_valid_records_validate_and_round_trip(entity: str, data: st.DataObject) -> None:
    record = data.draw(VALID[entity])
    model = validate_record(entity, record)
    again = validate_record(entity, model.model_dump(mode="json"))
    assert again == model


@pytest.mark.parametrize(
    ("entity", "field", "bad"),
    [(entity, field, bad) for entity, cases in INVALID.items() for field, bad in cases],
)
# ~40 cases, one broken rule each on an otherwise valid record: 25 records per case find
# what 100 did (the generated records vary, the broken rule does not), at a quarter the cost
@settings(max_examples=25)
@given(data=st.data())
def test_each_broken_rule_names_entity_key_field_and_rule(
    entity: str, field: str, bad: Any, data: st.DataObject
) -> None:
    record = dict(data.draw(VALID[entity]))
    record[field] = bad
    with pytest.raises(CanonicalValidationError) as info:
        validate_record(entity, record)
    err = info.value
    assert err.entity == entity
    key_field = ENTITIES[entity].key_field
    if field != key_field:
        assert err.key == record[key_field]
        assert f"{entity} {record[key_field]}:" in str(err)
    assert any(e.field.split(".")[0] == field for e in err.errors), err.errors
    assert all(e.rule for e in err.errors)


@given(customers())
def test_timestamps_are_normalised_to_utc(record: dict[str, Any]) -> None:
    cet = timezone(timedelta(hours=1))
    local = datetime(2024, 3, 1, 13, 0, tzinfo=cet)
    record["updated_at"] = local.isoformat()
    customer = validate_record("customer", record)
    assert isinstance(customer, Customer)
    assert customer.updated_at == local and customer.updated_at.tzinfo == UTC


@given(subscriptions())
def test_model_level_rule_is_attributed_to_its_field(record: dict[str, Any]) -> None:
    record["status"] = "trialing"
    record["trial_end"] = None
    with pytest.raises(CanonicalValidationError) as info:
        validate_record("subscription", record)
    assert [e.field for e in info.value.errors] == ["trial_end"]


@given(customers())
def test_unknown_fields_are_rejected_not_dropped(record: dict[str, Any]) -> None:
    record["legal_nmae"] = "typo"
    with pytest.raises(CanonicalValidationError, match="legal_nmae"):
        validate_record("customer", record)


@given(invoices())
def test_invoice_arithmetic_is_reported_not_rejected(record: dict[str, Any]) -> None:
    record["total_minor"] += 1  # off by a cent: valid input, visible drift
    invoice = validate_record("invoice", record)
    assert isinstance(invoice, Invoice)
    assert "total_minor != subtotal_minor + tax_minor" in invoice.arithmetic_errors()


TIERS = [
    {"up_to": 10, "unit_amount_minor": 1000},
    {"up_to": 100, "unit_amount_minor": 800, "flat_amount_minor": 500},
    {"up_to": None, "unit_amount_minor": 500},
]


@pytest.mark.parametrize(
    ("price", "quantity", "expected"),
    [
        ({"kind": "flat", "flat_amount_minor": 9900}, 7, 9900),
        ({"kind": "per_unit", "unit_amount_minor": 1250}, 4, 5000),
        ({"kind": "usage", "unit_amount_minor": 3}, 1000, 3000),
        # graduated: 10*1000 + (500 + 90*800) + 20*500
        ({"kind": "graduated", "tiers": TIERS}, 120, 10_000 + 500 + 72_000 + 10_000),
        ({"kind": "graduated", "tiers": TIERS}, 10, 10_000),
        ({"kind": "graduated", "tiers": TIERS}, 0, 0),
        # volume: all 120 units at the tier 120 falls in
        ({"kind": "volume", "tiers": TIERS}, 120, 60_000),
        ({"kind": "volume", "tiers": TIERS}, 50, 500 + 40_000),
        ({"kind": "per_unit", "unit_amount_minor": 999, "discount_bps": 1500}, 1, 849),
    ],
)
def test_price_models_by_hand(price: dict[str, Any], quantity: int, expected: int) -> None:
    assert Price.model_validate(price).amount_minor(quantity) == expected


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ([{"up_to": 10, "unit_amount_minor": 1}], "last tier must be open-ended"),
        ([{"up_to": None}, {"up_to": None}], "only the last tier"),
        ([{"up_to": 10}, {"up_to": 5}, {"up_to": None}], "strictly increasing"),
    ],
)
def test_bad_tiers_are_refused(tiers: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Price.model_validate({"kind": "graduated", "tiers": tiers})


@given(
    st.sampled_from(sorted(VALID)).flatmap(
        lambda entity: st.tuples(st.just(entity), VALID[entity])
    ),
    utc_times,
)
def test_a_restamped_valid_record_is_what_validation_would_make(
    entity_and_data: tuple[str, dict[str, Any]], stamp_text: str
) -> None:
    """The merge's shortcut for a copy that changes nothing (hub.sync.merging): the golden
    record with a newer stamp in ``dump_utc_datetime``'s form is exactly what validating
    it again would store."""
    entity, data = entity_and_data
    stamp = datetime.fromisoformat(stamp_text)
    clean = validate_record(entity, data).model_dump(mode="json")
    revalidated = validate_record(entity, {**clean, "updated_at": stamp.isoformat()})
    assert revalidated.model_dump(mode="json") == {
        **clean,
        "updated_at": dump_utc_datetime(stamp),
    }
