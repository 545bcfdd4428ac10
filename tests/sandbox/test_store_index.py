"""DocumentStore.iter_from: a field index read in (value, id) batches."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.store import DocumentStore


@given(
    values=st.lists(st.none() | st.integers(0, 9), max_size=40),
    low=st.integers(-1, 10),
    batch=st.integers(1, 5),
)
def test_iter_from_pages_through_ties_and_skips_documents_without_the_field(
    tmp_path_factory, values, low, batch
):
    """Batches end inside runs of equal values (keyset on value, then id): nothing is
    read twice or skipped, and other collections and missing fields stay out."""
    store = DocumentStore(tmp_path_factory.mktemp("idx") / "s.sqlite")
    store.index_field("ts")
    docs = [(f"{i:03d}", {"n": i} | ({} if v is None else {"ts": v})) for i, v in enumerate(values)]
    store.put_many("c", docs)
    store.put_many("other", [("x", {"n": -1, "ts": 5})])
    got = [d["n"] for d in store.iter_from("c", "ts", low, batch_size=batch)]
    want = [d["n"] for _, d in sorted(docs, key=lambda kv: (kv[1].get("ts", -9), kv[0]))]
    assert got == [n for n in want if values[n] is not None and values[n] >= low]
    store.close()


@pytest.mark.parametrize("bad", ["ts'); DROP TABLE docs; --", "a.b", ""])
def test_index_field_refuses_a_name_that_is_not_a_plain_field(tmp_path, bad) -> None:
    store = DocumentStore(tmp_path / "s.sqlite")
    with pytest.raises(ValueError, match="not a plain field name"):
        store.index_field(bad)
    store.close()
