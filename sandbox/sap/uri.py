"""Resource paths relative to a service root: ``Set``, ``Set(key)``, ``Set(key)/nav``,
``Set(key)/Property`` and a trailing ``/$count``; key predicates in single or named form."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sandbox.sap.edm import EdmValueError, EntitySet, Service, parse_iso, to_storage
from sandbox.sap.errors import INVALID_KEY, RESOURCE_NOT_FOUND, SapError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Resource:
    entity_set: EntitySet
    keys: dict[str, Any] | None = None
    nav: str | None = None
    prop: str | None = None
    count: bool = False


def parse_path(svc: Service, path: str) -> Resource:
    path = path.strip("/")
    count = False
    if path.endswith("/$count"):
        count = True
        path = path[: -len("/$count")]
    match = _NAME.match(path)
    if not match or match.group(0) not in svc.sets:
        segment = match.group(0) if match else path
        raise SapError(404, RESOURCE_NOT_FOUND, f"Resource not found for segment '{segment}'")
    es = svc.sets[match.group(0)]
    rest = path[match.end() :]
    keys = None
    if rest.startswith("("):
        close = _closing_paren(rest)
        keys = parse_key(es, rest[1:close])
        rest = rest[close + 1 :]
    nav = prop = None
    if rest:
        if not rest.startswith("/") or keys is None:
            raise SapError(404, RESOURCE_NOT_FOUND, f"Resource not found for segment '{path}'")
        name = rest[1:]
        if es.nav(name):
            nav = name
        elif name in es.prop_map:
            prop = name
        else:
            raise SapError(
                404, RESOURCE_NOT_FOUND, f"Resource not found for segment '{es.type_name}/{name}'"
            )
    if count and (keys is not None and nav is None):
        raise SapError(400, INVALID_KEY, "$count is only allowed on collections")
    return Resource(es, keys, nav, prop, count)


def _closing_paren(text: str) -> int:
    in_quote = False
    i = 1
    while i < len(text):
        ch = text[i]
        if ch == "'":
            if in_quote and i + 1 < len(text) and text[i + 1] == "'":
                i += 2
                continue
            in_quote = not in_quote
        elif ch == ")" and not in_quote:
            return i
        i += 1
    raise SapError(400, INVALID_KEY, "Malformed key predicate")


def _split_commas(text: str) -> list[str]:
    parts: list[str] = []
    buf: list[str] = []
    in_quote = False
    for ch in text:
        if ch == "'":
            in_quote = not in_quote  # doubled quotes toggle twice: harmless
        if ch == "," and not in_quote:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return parts


def _literal(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == "'" and text[-1] == "'":
        return text[1:-1].replace("''", "'")
    match = re.fullmatch(r"(datetimeoffset|datetime|guid)'(.*)'", text, re.IGNORECASE)
    if match:
        kind, value = match.group(1).lower(), match.group(2)
        return parse_iso(value) if kind.startswith("datetime") else value.lower()
    try:
        return int(text.rstrip("L"))
    except ValueError as exc:
        raise SapError(400, INVALID_KEY, f"Invalid key literal {text}") from exc


def parse_key(es: EntitySet, text: str) -> dict[str, Any]:
    parts = _split_commas(text)
    values: dict[str, Any] = {}
    try:
        if len(parts) == 1 and "=" not in _unquoted(parts[0]):
            if len(es.keys) != 1:
                raise SapError(400, INVALID_KEY, f"Invalid key predicate for {es.type_name}")
            values[es.keys[0]] = _literal(parts[0])
        else:
            for part in parts:
                name, _, lit = part.partition("=")
                name = name.strip()
                if name not in es.keys:
                    raise SapError(400, INVALID_KEY, f"Invalid key property '{name}'")
                values[name] = _literal(lit)
        if set(values) != set(es.keys):
            raise SapError(400, INVALID_KEY, f"Key of {es.type_name} is incomplete")
        return {k: to_storage(es.prop_map[k], v) for k, v in values.items()}
    except EdmValueError as exc:
        raise SapError(400, INVALID_KEY, str(exc)) from exc


def _unquoted(text: str) -> str:
    return re.sub(r"'(?:[^']|'')*'", "", text)


def key_predicate(es: EntitySet, doc: dict[str, Any]) -> str:
    from sandbox.sap.edm import to_key_literal

    if len(es.keys) == 1:
        k = es.keys[0]
        return f"({to_key_literal(es.prop_map[k], doc.get(k))})"
    inner = ",".join(f"{k}={to_key_literal(es.prop_map[k], doc.get(k))}" for k in es.keys)
    return f"({inner})"
