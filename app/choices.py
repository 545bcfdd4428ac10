"""The closed lists as the roof offers them: Dagster config choices (Launchpad enums) and
the CLI's choices, derived from their registries (entities: ``hub.model``; systems:
``connectors.registry``) and never written out again.

The ``Literal`` types are built from the registries at import; mypy cannot see through
that and takes them as ``Any``, while pydantic and Dagster see the real ``Literal`` (an
enum in the Launchpad) and refuse any other value."""

from __future__ import annotations

import enum
from typing import Literal

from connectors.registry import NAMES as SYSTEM_NAMES
from hub.model import ENTITY_ORDER

#: "every entity" / "every configured system"
ALL = "all"

#: The CLI's choices (``all`` first).
ENTITY_CHOICES: tuple[str, ...] = (ALL, *ENTITY_ORDER)
SYSTEM_CHOICES: tuple[str, ...] = (ALL, *SYSTEM_NAMES)

EntityName = Literal[ENTITY_ORDER]  # type: ignore[valid-type]
EntityChoice = Literal[ENTITY_CHOICES]  # type: ignore[valid-type]
SystemChoice = Literal[SYSTEM_CHOICES]  # type: ignore[valid-type]
#: For lists of systems: Dagster's config schema takes no ``list[Literal]``, but a list of
#: an Enum, shown as an enum in the Launchpad and checked before launch.
SystemName = enum.StrEnum("SystemName", {name: name for name in SYSTEM_NAMES})  # type: ignore[misc]
#: For lists of entities, likewise.
EntityItem = enum.StrEnum("EntityItem", {name: name for name in ENTITY_ORDER})  # type: ignore[misc]
