"""The fingerprint's canonical JSON is the standard library's form byte for byte, so
the fingerprints a hub store holds stay valid whichever encoder made them."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from hub.fingerprint import _default, canonical_json, fingerprint


def _stdlib(data: Any) -> str:
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), default=_default, ensure_ascii=False
    )


_text = st.text(st.characters(exclude_categories=("Cs",)))  # lone surrogates are refused
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | _text
    | st.dates()
    | st.datetimes(timezones=st.just(UTC))
    | st.decimals(allow_nan=False, allow_infinity=False)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(_text, inner, max_size=4)
    ),
    max_leaves=20,
)


@given(_json)
def test_canonical_json_is_the_standard_librarys_form(data: Any) -> None:
    assert canonical_json(data) == _stdlib(data)


def test_what_orjson_refuses_falls_back_to_the_same_form() -> None:
    huge = {"n": 2**70, "d": Decimal("1.50"), "on": date(2026, 1, 2)}
    assert canonical_json(huge) == _stdlib(huge)
    int_keys = {3: "c", 1: ["a"]}
    assert canonical_json(int_keys) == _stdlib(int_keys) == '{"1":["a"],"3":"c"}'


def test_key_order_and_types_do_not_change_the_fingerprint() -> None:
    stamp = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)
    a = {"b": [1, 2], "a": {"y": stamp, "x": Decimal("2.5")}}
    b = {"a": {"x": "2.5", "y": stamp.isoformat()}, "b": (1, 2)}
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) == fingerprint(json.loads(canonical_json(a)))
