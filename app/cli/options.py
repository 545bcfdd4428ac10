"""The CLI's shared options: one definition of --entity and --system for every command,
their values checked against the registries before anything runs, and of how a command
names the hub store it uses (for the one-line error when that store is unusable).

Both are repeatable on every command that takes them: declare the parameter as
``list[str] | None`` (None: every entity / system). A typo must never widen a command
(--system sapp once synced every system) or end in a traceback: it is refused at once,
naming the choices and the closest one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import typer

from app.choices import ALL, ENTITY_CHOICES, SYSTEM_CHOICES
from connectors.registry import NAMES as SYSTEM_NAMES
from hub.mapping.spec import closest
from hub.model import ENTITY_ORDER


def one_of(choices: Sequence[str]) -> Callable[[str], str]:
    """A parser accepting exactly ``choices`` (click prints "Invalid value for ...")."""

    def parse(value: str) -> str:
        if value in choices:
            return value
        hint = closest(value, choices)
        raise typer.BadParameter(f"{value!r}; choose from {', '.join(choices)}{hint}")

    return parse


def _repeatable(name: str, short: str, choices: Sequence[str], default_help: str, help: str) -> Any:
    return typer.Option(
        None,
        f"--{name}",
        short,
        parser=one_of(choices),
        metavar=name.upper(),
        help=f"{help or default_help}: {', '.join(choices)}",
    )


def entity_option(*, with_all: bool = False, help: str = "") -> Any:
    """--entity / -e, repeatable (annotate ``list[str] | None``; None: every entity)."""
    choices = ENTITY_CHOICES if with_all else ENTITY_ORDER
    return _repeatable(
        "entity", "-e", choices, "only these entities (repeatable; default all)", help
    )


def system_option(*, with_all: bool = False, help: str = "") -> Any:
    """--system / -s, repeatable (annotate ``list[str] | None``; None: every system)."""
    choices = SYSTEM_CHOICES if with_all else SYSTEM_NAMES
    return _repeatable(
        "system", "-s", choices, "only these systems (repeatable; default all)", help
    )


def chosen(values: Sequence[str] | None, every: Sequence[str]) -> list[str]:
    """The values of a repeatable --entity / --system in registry order, once each;
    none given, or ``all`` among them, means ``every``."""
    if not values or ALL in values:
        return list(every)
    return [v for v in every if v in values]


def parse_moment(value: str, option: str) -> datetime | None:
    """An ISO 8601 timestamp with its time zone, or None for empty; a value without a
    zone is refused (which zone would it be?) instead of failing inside the run."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 timestamp (e.g. 2025-06-30T00:00:00Z)",
            param_hint=option,
        ) from None
    if moment.tzinfo is None:
        raise typer.BadParameter(
            f"{value!r} has no time zone: add one, e.g. {value}Z or {value}+02:00",
            param_hint=option,
        )
    return moment


#: ``ctx.meta`` key (shared by every nested click context) of a command's own store URL
STORE_URL = "hub.store_url"


def use_store(ctx: typer.Context, url: str) -> str:
    """Note ``url`` as the store this command uses, for the one-line error if it is
    unusable; returns it."""
    ctx.meta[STORE_URL] = url
    return url


__all__ = [
    "ALL",
    "STORE_URL",
    "chosen",
    "entity_option",
    "one_of",
    "parse_moment",
    "system_option",
    "use_store",
]
