"""SOSL search (``GET search?q=FIND {...}``): the subset simple-salesforce's ``sf.search``
and ``sf.quick_search`` send, answered like the platform.

``FIND {terms} [IN ALL|NAME|EMAIL|PHONE FIELDS] [RETURNING Object[(fields [WHERE ...]
[ORDER BY ...] [LIMIT n] [OFFSET n])], ...] [LIMIT n]``. Terms are words (``*`` and ``?``
wildcards), ``"quoted phrases"``, ``AND``, ``OR``, ``AND NOT`` and parentheses; words side
by side must all match. A word matches a whole word of a searched field, case-insensitively
(the search index tokenises text); a term with punctuation (an e-mail address, a phone
number) also matches as a substring. Without ``RETURNING`` every queryable object is
searched and only ``Id`` is returned.

The search finds the matching record ids; everything after that (the field list, ``WHERE``,
``ORDER BY``, ``LIMIT``) is run as SOQL over those ids, so it behaves exactly as a query
does. There is no relevance ranking: matches come per object in ``RETURNING`` order, then
in id order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sandbox.salesforce import query, soql
from sandbox.salesforce.errors import ApiError
from sandbox.salesforce.schema import Field, Schema, SObjectType
from sandbox.store import DocumentStore

#: the most records one search returns, as on the platform
MAX_RESULTS = 2000
SEARCH_SCOPES = {
    "ALL": ("string", "textarea", "email", "phone", "url", "picklist"),
    "NAME": (),  # the object's name field, see _searched
    "EMAIL": ("email",),
    "PHONE": ("phone",),
    "SIDEBAR": ("string", "textarea", "email", "phone", "url", "picklist"),
}
_CLAUSE = re.compile(r"\b(WHERE|ORDER\s+BY|LIMIT|OFFSET)\b", re.IGNORECASE)
_WORD = re.compile(r"\w+", re.UNICODE)
#: a word of a search term: word characters and the wildcards
_TERM_WORD = re.compile(r"[\w*?]+", re.UNICODE)
Matcher = Callable[[list[str], str], bool]


def malformed(message: str) -> ApiError:
    return ApiError(400, "MALFORMED_SEARCH", message)


@dataclass(frozen=True)
class Returning:
    obj: SObjectType
    fields: str  # the field list as written, "Id" when none
    where: str  # the WHERE condition as written, "" when none
    tail: str  # ORDER BY / LIMIT / OFFSET as written


@dataclass(frozen=True)
class Search:
    matches: Matcher
    scope: str
    returning: tuple[Returning, ...]
    limit: int


# -- parsing --------------------------------------------------------------------------------
def parse(text: str, schema: Schema) -> Search:
    text = text.strip()
    head = re.match(r"FIND\s*\{((?:[^}\\]|\\.)*)\}", text, re.IGNORECASE)
    if head is None:
        raise malformed("SOSL must start with FIND {search terms}")
    matches = _terms(head.group(1))
    rest = text[head.end() :].strip()
    scope = "ALL"
    scoped = re.match(r"IN\s+(\w+)\s+FIELDS\b", rest, re.IGNORECASE)
    if scoped:
        scope = scoped.group(1).upper()
        if scope not in SEARCH_SCOPES:
            raise malformed(f"unknown search group {scoped.group(1)} FIELDS")
        rest = rest[scoped.end() :].strip()
    limit = MAX_RESULTS
    overall = re.search(r"\bLIMIT\s+(\d+)\s*$", rest, re.IGNORECASE)
    if overall and "(" not in rest[overall.start() :]:
        limit = min(limit, int(overall.group(1)))
        rest = rest[: overall.start()].strip()
    returning: list[Returning] = []
    if re.match(r"RETURNING\b", rest, re.IGNORECASE):
        returning = _returning(rest[len("RETURNING") :], schema)
    elif rest:
        raise malformed(f"unexpected text after the search terms: {rest[:40]}")
    else:
        returning = [Returning(obj, "Id", "", "") for obj in schema.objects.values()]
    return Search(matches, scope, tuple(returning), limit)


def _returning(text: str, schema: Schema) -> list[Returning]:
    out = []
    for spec in _split_top_level(text):
        name, _, inner = spec.partition("(")
        obj = schema.sobject(name.strip())
        if obj is None:
            raise ApiError(400, "INVALID_TYPE", f"sObject type '{name.strip()}' is not supported.")
        inner = inner.rstrip().removesuffix(")") if inner else ""
        found = _CLAUSE.search(inner)
        fields = (inner[: found.start()] if found else inner).strip().rstrip(",") or "Id"
        clauses = inner[found.start() :] if found else ""
        where, tail = "", clauses
        if clauses[:5].upper() == "WHERE":
            after = _CLAUSE.search(clauses, 5)
            where = clauses[5 : after.start() if after else None].strip()
            tail = clauses[after.start() :] if after else ""
        out.append(Returning(obj, fields, where, tail.strip()))
    return out


def _split_top_level(text: str) -> list[str]:
    """``A(x, y), B`` -> ``["A(x, y)", "B"]``: commas outside parentheses and quotes."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, char in enumerate(text):
        if char == "'" and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and char in "()":
            depth += 1 if char == "(" else -1
        elif not quoted and char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _terms(raw: str) -> Matcher:
    """The search terms as one matcher of (words of a field, its lower-cased text)."""
    tokens = re.findall(r'"[^"]*"|\(|\)|[^\s()"]+', raw)
    if not tokens:
        raise malformed("the search terms are empty")
    parser = _TermParser(tokens)
    matcher = parser.either()
    if parser.i != len(tokens):
        raise malformed(f"unexpected {tokens[parser.i]!r} in the search terms")
    return matcher


class _TermParser:
    """``OR`` binds loosest, then ``AND`` (also two terms side by side), then ``NOT``."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens, self.i = tokens, 0

    def _peek(self) -> str:
        return self.tokens[self.i].upper() if self.i < len(self.tokens) else ""

    def either(self) -> Matcher:
        items = [self.both()]
        while self._peek() == "OR":
            self.i += 1
            items.append(self.both())
        return items[0] if len(items) == 1 else lambda w, t: any(m(w, t) for m in items)

    def both(self) -> Matcher:
        items = [self.negated()]
        while self._peek() not in ("", "OR", ")"):
            if self._peek() == "AND":
                self.i += 1
            items.append(self.negated())
        return items[0] if len(items) == 1 else lambda w, t: all(m(w, t) for m in items)

    def negated(self) -> Matcher:
        if self._peek() == "NOT":
            self.i += 1
            inner = self.negated()
            return lambda w, t: not inner(w, t)
        if self._peek() == "(":
            self.i += 1
            inner = self.either()
            if self._peek() != ")":
                raise malformed("unbalanced parentheses in the search terms")
            self.i += 1
            return inner
        if self.i >= len(self.tokens) or self._peek() in ("AND", "OR", ")"):
            raise malformed("a search operator needs a term on each side")
        token = self.tokens[self.i]
        self.i += 1
        return _term(token)


def _term(token: str) -> Matcher:
    phrase = token.startswith('"')
    text = token.strip('"').lower()
    if len(text.replace("*", "").replace("?", "")) < 2:
        raise ApiError(
            400, "INVALID_SEARCH", f"search term must be longer than one character: {token}"
        )
    patterns = [re.compile(_wildcards(w)) for w in _TERM_WORD.findall(text)]
    punctuated = not phrase and bool(re.search(r"[^\w*?]", text))

    def match(field_words: list[str], field_text: str) -> bool:
        if punctuated and text in field_text:
            return True
        n = len(patterns)
        return any(
            all(p.match(field_words[i + k]) for k, p in enumerate(patterns))
            for i in range(len(field_words) - n + 1)
        )

    return match


def _wildcards(word: str) -> str:
    """A term word as a whole-word pattern: ``*`` any run of word characters, ``?`` one."""
    wild = {"*": r"\w*", "?": r"\w"}
    return "^" + "".join(wild.get(c) or re.escape(c) for c in word) + "$"


# -- running --------------------------------------------------------------------------------
def run(store: DocumentStore, search: Search, schema: Schema, version: str) -> list[dict[str, Any]]:
    """The matching records, rendered as the REST API renders query records."""
    out: list[dict[str, Any]] = []
    for spec in search.returning:
        ids = _matching_ids(store.iter(spec.obj.name), _searched(spec.obj, search.scope), search)
        if not ids:
            continue
        quoted = ", ".join(f"'{i}'" for i in ids)
        where = f"Id IN ({quoted})" + (f" AND ({spec.where})" if spec.where else "")
        # SOQL for the emulator's own parser, from the request's clauses and stored ids
        text = f"SELECT {spec.fields} FROM {spec.obj.name} WHERE {where} {spec.tail}"  # noqa: S608
        parsed = soql.parse(text.strip(), schema)
        result = query.execute(store, parsed, include_deleted=False)
        out.extend(query.rest_records(result, 0, result.total, version))
        if len(out) >= search.limit:
            return out[: search.limit]
    return out


def _searched(obj: SObjectType, scope: str) -> list[Field]:
    if scope == "NAME":
        return [f for f in obj.fields if f.name in (obj.name_field, "FirstName", "LastName")]
    kinds = SEARCH_SCOPES[scope]
    return [f for f in obj.fields if f.type in kinds]


def _matching_ids(docs: Iterable[dict[str, Any]], fields: list[Field], search: Search) -> list[str]:
    found = []
    for doc in docs:
        if doc.get("IsDeleted"):
            continue
        text = " ".join(str(doc[f.name]) for f in fields if doc.get(f.name) not in (None, ""))
        lowered = text.lower()
        if text and search.matches(_WORD.findall(lowered), lowered):
            found.append(str(doc["Id"]))
    return found
