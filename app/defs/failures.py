"""How steps fail: errors no retry can fix (a refused credential, a request the system will
never accept, a hub store without its schema or out of reach) fail the step at once, with
the cause and the fix as the failure's description, which the run page shows at the top
and the CLI prints in one line. A stop the operator asked for (app.stop) fails the step
without retry, and every step after it before it starts. Everything else keeps the step's
retry policy."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from dagster import Failure
from sqlalchemy.exc import SQLAlchemyError

from app.stop import STOPPED, stop_requested
from connectors.errors import AuthError, PermanentError
from hub.store.db import store_problem
from hub.sync.engine import SyncInterrupted

T = TypeVar("T")


@contextmanager
def failing_fast(store_url: str) -> Iterator[None]:
    """Run a step's body; turn a configuration or authentication error into a Failure
    that is not retried and says what to do."""
    if stop_requested():
        raise Failure(description=f"not started: {STOPPED}", allow_retries=False)
    try:
        yield
    except Failure:
        raise
    except SyncInterrupted as exc:
        raise Failure(description=f"{STOPPED}: {exc}", allow_retries=False) from exc
    except (AuthError, PermanentError) as exc:
        raise Failure(description=str(exc), allow_retries=False) from exc
    except SQLAlchemyError as exc:
        problem = store_problem(exc, store_url)
        if problem is None:
            raise
        raise Failure(description=problem, allow_retries=False) from exc


def fails_fast(body: Callable[..., T]) -> Callable[..., T]:
    """``failing_fast`` around an asset or op body whose context has the ``hub_store``
    resource."""

    @functools.wraps(body)
    def wrapper(context: Any, *args: Any, **kwargs: Any) -> T:
        with failing_fast(context.resources.hub_store.url()):
            return body(context, *args, **kwargs)

    return wrapper
