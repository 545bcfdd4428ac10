"""The ``dunning_history`` transform: an invoice's dunning run as the text Salesforce's
``Invoice__c.Dunning_History__c`` holds (one event per line, oldest first) and back,
lossless both ways (hypothesis), and a line that is not an event names its line number."""

from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.mapping.transforms import REGISTRY, Context, TransformError
from hub.model import DunningEvent, DunningOutcome

TO_CANONICAL, TO_SYSTEM = REGISTRY["dunning_history"]
CTX = Context()

events = st.lists(
    st.builds(
        DunningEvent,
        stage=st.integers(1, 4),
        on=st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)),
        outcome=st.none() | st.sampled_from(DunningOutcome),
    ),
    max_size=6,
).map(lambda run: [e.model_dump(mode="json") for e in run])


@given(run=events)
def test_canonical_events_survive_the_text_and_back(run: list[dict[str, Any]]) -> None:
    text = TO_SYSTEM(run, CTX)
    assert TO_CANONICAL(text, CTX) == run
    if text is not None:
        assert TO_SYSTEM(TO_CANONICAL(text, CTX), CTX) == text


def test_one_line_per_event_in_order_the_outcome_left_out_while_pending() -> None:
    run = [
        {"stage": 1, "on": "2026-03-05", "outcome": "retried"},
        {"stage": 2, "on": "2026-03-19", "outcome": None},
    ]
    assert TO_SYSTEM(run, CTX) == "2026-03-05 stage 1 retried\n2026-03-19 stage 2"


def test_no_events_is_null_in_salesforce_and_null_reads_as_no_events() -> None:
    """Salesforce stores no empty text: a run without events must not read back as a
    different value than it was pushed as."""
    assert TO_SYSTEM([], CTX) is None
    assert TO_CANONICAL(None, CTX) == []
    assert TO_CANONICAL("", CTX) == []


def test_typed_values_render_like_their_json() -> None:
    event = DunningEvent(stage=3, on=date(2026, 4, 1), outcome=DunningOutcome.WRITTEN_OFF)
    assert TO_SYSTEM([event.model_dump()], CTX) == "2026-04-01 stage 3 written_off"


def test_windows_line_ends_and_blank_lines_are_read() -> None:
    text = "2026-03-05 stage 1 retried\r\n\r\n 2026-03-19 stage 2 paid \r\n"
    assert TO_CANONICAL(text, CTX) == [
        {"stage": 1, "on": "2026-03-05", "outcome": "retried"},
        {"stage": 2, "on": "2026-03-19", "outcome": "paid"},
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-03-05 stage 1 retried\nstage two", "line 2: 'stage two' is not"),
        ("2026-02-30 stage 1", "line 1: not a date: '2026-02-30'"),
        ("2026-03-05 stage 1 forgiven", "line 1: unknown outcome 'forgiven'"),
    ],
)
def test_a_line_that_is_not_an_event_is_named(text: str, message: str) -> None:
    with pytest.raises(TransformError, match=message):
        TO_CANONICAL(text, CTX)


@pytest.mark.parametrize(
    ("run", "message"),
    [
        ([{"stage": "1", "on": "2026-03-05"}], "event 1: stage must be an integer"),
        ([{"stage": 1}], "event 1: no day"),
        ([{"stage": 1, "on": "2026-03-05", "outcome": "lost"}], "unknown outcome 'lost'"),
        ("2026-03-05 stage 1", "must be a list"),
    ],
)
def test_events_that_cannot_be_written_are_named(run: Any, message: str) -> None:
    with pytest.raises(TransformError, match=message):
        TO_SYSTEM(run, CTX)
