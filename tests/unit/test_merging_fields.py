"""The merge's views of a record flattened once equal flattening the record again, for
any record (hypothesis): hub.sync.merging flattens each record it reads a single time."""

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from hub.sync.fingerprints import EXTERNAL_IDS, with_flat_ids
from hub.sync.merge import flatten
from hub.sync.merging import merged_fields

leaves = st.one_of(st.none(), st.text(max_size=3), st.integers(-3, 3), st.just([]))
nested = st.dictionaries(st.sampled_from(["city", "street", "zip"]), leaves, max_size=3)
values = st.one_of(leaves, nested, st.just({}))
names = st.sampled_from(["legal_name", "address", "updated_at", "items", EXTERNAL_IDS])
records = st.dictionaries(names, values)
ids = st.dictionaries(st.sampled_from(["sap", "salesforce"]), st.text(max_size=3), max_size=2)
SKIPPED = frozenset({"updated_at", EXTERNAL_IDS, "items"})


@given(records, st.booleans())
def test_merged_fields_equal_flattening_the_record_without_the_skipped_ones(
    record: dict[str, Any], new: bool
) -> None:
    kept = {k: v for k, v in record.items() if k not in SKIPPED and (not new or v is not None)}
    assert merged_fields(flatten(record), SKIPPED, new=new) == flatten(kept)


@given(records, ids)
def test_with_flat_ids_equals_flattening_the_record_with_those_ids(
    record: dict[str, Any], known: dict[str, str]
) -> None:
    assert with_flat_ids(flatten(record), known) == flatten({**record, EXTERNAL_IDS: known})
