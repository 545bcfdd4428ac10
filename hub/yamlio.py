"""YAML as the hub reads it: safe loading through libyaml where PyYAML was built with it.

The pure-Python loader was the largest single cost of building connectors and engines in
the test suite (mappings are parsed on every build); libyaml parses the same documents,
with the same safe types and the same line marks for error messages, about ten times
faster."""

from __future__ import annotations

from typing import Any

import yaml

SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(text: str) -> Any:
    """The document in ``text`` (safe types only)."""
    return yaml.load(text, Loader=SafeLoader)  # noqa: S506 - a safe loader


def compose(text: str) -> yaml.Node | None:
    """The node tree of ``text``, whose marks give each value's line."""
    return yaml.compose(text, Loader=SafeLoader)
