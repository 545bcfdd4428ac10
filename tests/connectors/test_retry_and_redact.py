"""Retry policy and secret redaction: pure logic, no network."""

import logging

import pytest

from connectors.errors import PermanentError, SystemUnavailableError, TransientError
from connectors.http import requests_session, timeout_from_env
from connectors.redact import install_log_redaction, redact, register_secret
from connectors.retry import RetryPolicy, call_with_retry, parse_retry_after

FAST = RetryPolicy(max_attempts=4, max_seconds=10, initial_wait=0.001, max_wait=0.01)


def test_transient_failures_are_retried_until_success() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("sap", "503", status=503, retry_after=0.001)
        return "ok"

    assert call_with_retry("sap", flaky, FAST) == "ok"
    assert len(calls) == 3


def test_permanent_errors_are_never_retried() -> None:
    calls = []

    def bad_request() -> None:
        calls.append(1)
        raise PermanentError("salesforce", "400 MALFORMED_QUERY", status=400)

    with pytest.raises(PermanentError):
        call_with_retry("salesforce", bad_request, FAST)
    assert len(calls) == 1


def test_exhausted_retries_name_the_system() -> None:
    def down() -> None:
        raise TransientError("wms", "503 Service Unavailable", status=503)

    with pytest.raises(SystemUnavailableError, match=r"^wms: still failing after 4 attempts"):
        call_with_retry("wms", down, FAST)


def test_retry_after_is_honoured_but_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("tenacity.nap.time.sleep", slept.append)
    calls = []

    def throttled() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise TransientError("pim", "429", status=429, retry_after=7)
        if len(calls) == 2:
            raise TransientError("pim", "429", status=429, retry_after=500)
        return "ok"

    policy = RetryPolicy(max_attempts=5, max_seconds=1000, max_wait=30)
    assert call_with_retry("pim", throttled, policy) == "ok"
    assert slept == [7.0, 30.0]


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None


def test_registered_secrets_and_credential_shapes_are_masked() -> None:
    register_secret("hunter2-very-secret")
    text = (
        "login failed for hunter2-very-secret; Authorization: Bearer 00Dxx!AQ4AQFO "
        "url=postgresql://hub:pw123@db/hub body=grant_type=password&password=abc&x=1 "
        '{"access_token": "tok-123"}'
    )
    cleaned = redact(text)
    for secret in ("hunter2-very-secret", "00Dxx!AQ4AQFO", "pw123", "abc&", "tok-123"):
        assert secret not in cleaned
    assert "Authorization: Bearer ***" in cleaned and "://hub:***@db" in cleaned


def test_a_secret_containing_another_is_masked_whole_among_thousands() -> None:
    """A long-lived process registers a token per login: thousands of secrets, where one
    may contain another (a session id inside a token); each is masked whole, never left
    half-visible around the shorter one's mask."""
    for i in range(3000):
        register_secret(f"session-token-{i:05d}-abcdef")
    register_secret("inner-secret")
    register_secret("outer-inner-secret-tail")
    cleaned = redact("a outer-inner-secret-tail b inner-secret c session-token-02999-abcdef d")
    assert cleaned == "a *** b *** c *** d"


def test_log_records_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    register_secret("s3cr3t-client-secret")
    with caplog.at_level(logging.INFO):
        logging.getLogger("hub.test").info("token call with %s", "s3cr3t-client-secret")
    assert "s3cr3t-client-secret" not in caplog.text
    assert "token call with ***" in caplog.text


def test_http_timeout_comes_from_the_environment_and_rejects_nonsense() -> None:
    assert timeout_from_env({}, 30.0) == 30.0
    assert timeout_from_env({"HUB_HTTP_TIMEOUT": " 2.5 "}, 30.0) == 2.5
    for bad in ("0", "-1", "soon"):
        with pytest.raises(ValueError, match="HUB_HTTP_TIMEOUT"):
            timeout_from_env({"HUB_HTTP_TIMEOUT": bad}, 30.0)


def test_requests_session_times_out_calls_that_pass_no_timeout() -> None:
    """simple-salesforce and pyodata call the session without a timeout: a silent server
    must still be abandoned (a listening socket that never answers)."""
    import socket

    import requests

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        session = requests_session(timeout=0.5)
        with pytest.raises(requests.exceptions.ReadTimeout):
            session.get(f"http://127.0.0.1:{server.getsockname()[1]}/")
    finally:
        server.close()


@pytest.mark.parametrize("bad", ["0", "-2", "soon", "nan", "inf"])
def test_a_timeout_that_is_not_a_positive_finite_number_names_the_variable(bad: str) -> None:
    from connectors.settings import parse_timeout

    assert parse_timeout(" ") is None and parse_timeout("2.5") == 2.5
    with pytest.raises(ValueError, match=r"HUB_HTTP_TIMEOUT=.*give a positive number of seconds"):
        parse_timeout(bad)


def test_a_spent_time_budget_says_how_many_attempts_it_made() -> None:
    """The error says what happened (attempts made, time spent) beside the budget: it
    used to print the policy's attempt count whichever limit stopped the retries."""
    policy = RetryPolicy(
        max_attempts=50, max_seconds=0.05, initial_wait=0.02, max_wait=0.02, jitter=0
    )

    def down() -> None:
        raise TransientError("sap", "503 Service Unavailable", status=503)

    with pytest.raises(SystemUnavailableError) as caught:
        call_with_retry("sap", down, policy)
    said = str(caught.value)
    assert "retry budget 50 attempts / 0s" in said, said
    made = int(said.split("still failing after ")[1].split(" attempts")[0])
    assert 2 <= made < 50, said
