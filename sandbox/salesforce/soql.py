"""SOQL: the subset the hub and its tests use, parsed once and compiled into closures.

Supported: ``SELECT`` of fields (and one level of child-to-parent relationship fields such
as ``Account__r.Hub_Id__c``), ``COUNT()``, or aggregate functions (``COUNT``,
``COUNT_DISTINCT``, ``SUM``, ``AVG``, ``MIN``, ``MAX`` of a field, with an alias or named
``exprN``) with ``GROUP BY`` fields (:mod:`sandbox.salesforce.aggregate`); ``FROM`` one
object; ``WHERE`` with AND / OR / NOT and parentheses (mixing AND and OR without
parentheses is refused, as Salesforce does),
``= != <> < <= > >=``, ``IN`` / ``NOT IN``, ``LIKE``, on strings, numbers, booleans,
``null``, dates, datetimes and date literals (``TODAY``, ``LAST_N_DAYS:30``...,
:mod:`sandbox.salesforce.date_literals`); ``ORDER BY`` several fields with ASC/DESC and NULLS
FIRST/LAST; ``LIMIT``; ``OFFSET`` (at most 2000). One level of parent-to-child relationship
subqueries in the select list, ``(SELECT ... FROM Contacts [WHERE] [ORDER BY] [LIMIT])``,
run by :mod:`sandbox.salesforce.subquery`.

Literals are checked against the field's type at parse time and turned into the stored
representation, so evaluation compares plain Python values: text case-insensitively, ids
exactly, dates and datetimes as their stored ISO strings (every stored datetime is UTC
with the same layout, so string order is time order). Parsed queries are cached: a
client paging through a big result, or polling the same delta query, parses it once.

Errors carry Salesforce's wording (``MALFORMED_QUERY``, ``INVALID_FIELD``,
``INVALID_TYPE``) with the ``ERROR at Row:1:Column:N`` pointer the platform prints.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, TypeVar

from sandbox.salesforce import date_literals, ids
from sandbox.salesforce.errors import ApiError
from sandbox.salesforce.schema import DEFAULT_SCHEMA, Field, Schema, SObjectType
from sandbox.salesforce.values import (
    ID_TYPES,
    NUMBER_TYPES,
    TEXT_TYPES,
    format_datetime,
    parse_date,
    parse_datetime,
)

MAX_OFFSET = 2000

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\dT]))
  | (?P<number>[-+]?\d+(?:\.\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),:])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "'": "'", '"': '"',
            "\\": "\\", "%": "\\%", "_": "\\_"}  # fmt: skip
_KEYWORDS = frozenset(
    [
        "SELECT",
        "FROM",
        "WHERE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "LIKE",
        "ORDER",
        "BY",
        "ASC",
        "DESC",
        "NULLS",
        "FIRST",
        "LAST",
        "LIMIT",
        "OFFSET",
        "GROUP",
        "HAVING",
        "TYPEOF",
        "WITH",
        "USING",
    ]
)

Doc = dict[str, Any]
#: resolves a reference field of a record to the parent record (or None)
Resolver = Callable[[Field, Doc], Doc | None]
_T = TypeVar("_T")
Predicate = Callable[[Doc, Resolver], bool]


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int

    @property
    def upper(self) -> str:
        return self.text.upper()


@dataclass(frozen=True)
class FieldRef:
    """A selected or filtered field: on the queried object, or through one reference."""

    field: Field
    via: Field | None = None  # the reference field on the queried object
    target: SObjectType | None = None  # the parent's object type

    @property
    def label(self) -> str:
        if self.via is None:
            return self.field.name
        return f"{self.via.relationship_name}.{self.field.name}"

    def get(self, doc: Doc, resolve: Resolver) -> Any:
        if self.via is None:
            return doc.get(self.field.name)
        parent = resolve(self.via, doc)
        return None if parent is None else parent.get(self.field.name)


@dataclass(frozen=True)
class OrderItem:
    ref: FieldRef
    desc: bool
    nulls_first: bool


@dataclass(frozen=True)
class Lookup:
    """``field IN (...)`` / ``field = v`` on Id or an external-id field that every match
    must satisfy (the WHERE clause, or one operand of its top-level AND): the executor
    reads those records by key instead of scanning the object, as Salesforce's indexes
    make such queries selective. The full WHERE is still applied to each candidate."""

    field: Field
    values: tuple[Any, ...]


#: datetime fields the repository indexes in the store (``DocumentStore.index_field``)
STAMP_FIELDS = ("SystemModstamp", "LastModifiedDate")


@dataclass(frozen=True)
class Floor:
    """``field >= low`` holds for every record the WHERE can match (``low`` a stored
    datetime string): the executor reads candidates from the store's index on ``field``
    instead of scanning the object, as a real org answers ``SystemModstamp > X`` delta
    polls from its index. The full WHERE is still applied to each candidate."""

    field: str
    low: str


#: FIELDS(<group>): which of an object's fields each group selects
FIELD_GROUPS: dict[str, Callable[[Field], bool]] = {
    "ALL": lambda f: True,
    "STANDARD": lambda f: not f.custom,
    "CUSTOM": lambda f: f.custom,
}
#: the most rows a query selecting FIELDS(ALL) or FIELDS(CUSTOM) may ask for
FIELDS_LIMIT = 200
#: the aggregate functions an aggregate query may select (of one field each)
AGGREGATES = frozenset({"COUNT", "COUNT_DISTINCT", "SUM", "AVG", "MIN", "MAX"})


@dataclass(frozen=True)
class _Item:
    """One entry of a select list as written: a field, or ``FUNCTION(field) [alias]``."""

    head: Token
    arg: Token | None = None
    alias: Token | None = None
    sub: int | None = None  # a subquery: the token index of its opening parenthesis
    group: str | None = None  # FIELDS(ALL|STANDARD|CUSTOM), expanded once FROM is known


@dataclass(frozen=True)
class Aggregate:
    function: str
    ref: FieldRef
    name: str  # the alias, or expr0, expr1...


@dataclass(frozen=True)
class Grouping:
    """An aggregate query (``GROUP BY``, or aggregate functions without it): a row per
    group with the selected grouped fields and aggregates in select order, ordered by
    (column index, desc, nulls first) items."""

    by: tuple[FieldRef, ...]
    columns: tuple[FieldRef | Aggregate, ...]
    order: tuple[tuple[int, bool, bool], ...] = ()

    def column_of(self, head: str, label: str, aggregate: bool) -> int | None:
        for index, column in enumerate(self.columns):
            if isinstance(column, Aggregate) and aggregate:
                if column.function == head and column.ref.label == label:
                    return index
            elif isinstance(column, FieldRef) and not aggregate and column.label == label:
                return index
        return None


@dataclass(frozen=True)
class ChildQuery:
    """A parent-to-child subquery: the rows of ``obj`` whose reference ``via`` holds the
    parent's Id, under the key ``name`` (the relationship as describe names it), placed
    after the first ``position`` selected fields. ``limit`` counts per parent."""

    name: str
    obj: SObjectType
    via: Field
    fields: tuple[FieldRef, ...]
    where: Predicate | None
    order: tuple[OrderItem, ...]
    limit: int | None
    position: int


@dataclass(frozen=True)
class Query:
    soql: str
    obj: SObjectType
    fields: tuple[FieldRef, ...]
    count: bool
    where: Predicate | None
    order: tuple[OrderItem, ...]
    limit: int | None
    offset: int
    lookup: Lookup | None = None
    floor: Floor | None = None
    grouping: Grouping | None = None
    children: tuple[ChildQuery, ...] = ()

    @property
    def needs_parents(self) -> bool:
        return any(f.via is not None for f in self.fields)


def _error_pointer(soql: str, pos: int) -> str:
    """Salesforce's caret under the offending token (row and column 1-based)."""
    before = soql[:pos]
    row = before.count("\n") + 1
    line_start = before.rfind("\n") + 1
    line_end = soql.find("\n", pos)
    line = soql[line_start : None if line_end < 0 else line_end]
    col = pos - line_start + 1
    return f"\n{line}\n{' ' * (col - 1)}^\nERROR at Row:{row}:Column:{col}\n"


class _Parser:
    def __init__(self, soql: str, schema: Schema = DEFAULT_SCHEMA) -> None:
        self.soql = soql
        self.schema = schema
        self.tokens = self._tokenize(soql)
        self.i = 0
        self.obj: SObjectType | None = None
        #: predicates (by id; the query keeps them alive) that select records by key
        self.lookups: dict[int, Lookup] = {}
        #: predicates (by id) that imply ``field >= low`` on STAMP_FIELDS: {field: low}
        self.floors: dict[int, dict[str, str]] = {}
        self.nested = False  # parsing a subquery, which may not hold another

    # -- tokens ----------------------------------------------------------------------------
    def _tokenize(self, soql: str) -> list[Token]:
        out: list[Token] = []
        pos = 0
        while pos < len(soql):
            match = _TOKEN.match(soql, pos)
            if match is None:
                raise self.malformed_at(pos, f"unexpected token: '{soql[pos]}'")
            kind = match.lastgroup or ""
            if kind != "ws":
                out.append(Token(kind, match.group(), pos))
            pos = match.end()
        out.append(Token("eof", "<EOF>", len(soql)))
        return out

    def peek(self, offset: int = 0) -> Token:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def next(self) -> Token:
        tok = self.peek()
        self.i += 1
        return tok

    def at_keyword(self, *words: str) -> bool:
        tok = self.peek()
        return tok.kind == "ident" and tok.upper in words

    def expect_keyword(self, word: str) -> Token:
        tok = self.next()
        if tok.kind != "ident" or tok.upper != word:
            raise self.unexpected(tok)
        return tok

    def expect(self, kind: str, text: str | None = None) -> Token:
        tok = self.next()
        if tok.kind != kind or (text is not None and tok.text != text):
            raise self.unexpected(tok)
        return tok

    # -- errors ----------------------------------------------------------------------------
    def malformed_at(self, pos: int, message: str) -> ApiError:
        return ApiError(400, "MALFORMED_QUERY", _error_pointer(self.soql, pos) + message)

    def unexpected(self, tok: Token) -> ApiError:
        return self.malformed_at(tok.pos, f"unexpected token: '{tok.text}'")

    def invalid_field(self, tok: Token, message: str) -> ApiError:
        return ApiError(400, "INVALID_FIELD", _error_pointer(self.soql, tok.pos) + message)

    # -- grammar ---------------------------------------------------------------------------
    def parse(self) -> Query:
        self.expect_keyword("SELECT")
        count = False
        items: list[_Item] = []
        if self.at_keyword("COUNT") and self.peek(1).text == "(" and self.peek(2).text == ")":
            self.i += 3
            count = True
        else:
            items = self._select_items()
        obj = self.obj = self._from()
        written, items = items, self._expand_field_groups(items)
        columns = self._columns(items)
        children = self._children(items)
        where = None
        if self.at_keyword("WHERE"):
            self.next()
            where = self.condition()
        group_by: list[tuple[Token, FieldRef]] = []
        if self.at_keyword("GROUP"):
            self.next()
            self.expect_keyword("BY")
            group_by = self._field_list()
        if self.at_keyword("HAVING", "WITH", "USING", "TYPEOF"):
            raise self.malformed_at(
                self.peek().pos, f"{self.peek().upper} is not supported by the sandbox"
            )
        grouping = None
        if group_by or any(isinstance(c, Aggregate) for _, c in columns):
            grouping = self._grouping(columns, group_by)
        if grouping is not None and children:
            first = next(item.head for item in items if item.sub is not None)
            raise self.malformed_at(first.pos, "an aggregate query cannot hold a subquery")
        fields = [] if grouping else [c for _, c in columns if isinstance(c, FieldRef)]
        order: tuple[OrderItem, ...] = ()
        if grouping is not None and self.at_keyword("ORDER"):
            grouping = self._aggregate_order(grouping)
        elif self.at_keyword("ORDER"):
            order = self._order_by()
        limit, offset = self._limit_offset()
        self._check_field_group_limit(written, limit)
        tok = self.next()
        if tok.kind != "eof":
            raise self.unexpected(tok)
        lookup = None if where is None else self.lookups.get(id(where))
        floors = {} if where is None else self.floors.get(id(where), {})
        floor = next((Floor(n, floors[n]) for n in STAMP_FIELDS if n in floors), None)
        return Query(
            self.soql, obj, tuple(fields), count, where, order, limit, offset, lookup,
            floor, grouping, children,
        )  # fmt: skip

    def _from(self) -> SObjectType:
        """``FROM Object``: the queried object, or Salesforce's INVALID_TYPE."""
        return self._from_name(
            self.schema.sobject,
            lambda name: (
                f"sObject type '{name}' is not supported. If you are attempting to "
                "use a custom object, be sure to append the '__c' after the entity name. "
                "Please reference your WSDL or the describe call for the appropriate names."
            ),
        )

    def _from_name(self, find: Callable[[str], _T | None], refusal: Callable[[str], str]) -> _T:
        """``FROM name``: what ``find`` knows by that name, else Salesforce's INVALID_TYPE
        with ``refusal(name)`` pointing at the name (an object, or a subquery's
        relationship)."""
        self.expect_keyword("FROM")
        tok = self.expect("ident")
        found = find(tok.text)
        if found is None:
            raise ApiError(
                400, "INVALID_TYPE", _error_pointer(self.soql, tok.pos) + refusal(tok.text)
            )
        return found

    def _limit_offset(self) -> tuple[int | None, int]:
        """``[LIMIT n] [OFFSET m]``; Salesforce allows an OFFSET of at most 2000."""
        limit, offset = None, 0
        if self.at_keyword("LIMIT"):
            self.next()
            limit = self.integer()
        if self.at_keyword("OFFSET"):
            self.next()
            tok = self.peek()
            offset = self.integer()
            if offset > MAX_OFFSET:
                raise ApiError(
                    400,
                    "NUMBER_OUTSIDE_VALID_RANGE",
                    _error_pointer(self.soql, tok.pos)
                    + f"Maximum SOQL offset allowed is {MAX_OFFSET}",
                )
        return limit, offset

    def _order_by(self) -> tuple[OrderItem, ...]:
        """``ORDER BY field [ASC|DESC] [NULLS FIRST|LAST], ...`` of a record query."""
        self.next()
        self.expect_keyword("BY")
        order = []
        while True:
            ref = self.field_ref(self.expect("ident"))
            order.append(OrderItem(ref, *self._direction()))
            if self.peek().text != ",":
                return tuple(order)
            self.next()

    def _direction(self) -> tuple[bool, bool]:
        """An ORDER BY item's ``ASC|DESC`` and ``NULLS FIRST|LAST``: (desc, nulls first);
        nulls come first ascending and last descending unless told."""
        desc = False
        if self.at_keyword("ASC", "DESC"):
            desc = self.next().upper == "DESC"
        nulls_first = not desc
        if self.at_keyword("NULLS"):
            self.next()
            if not self.at_keyword("FIRST", "LAST"):
                raise self.unexpected(self.peek())
            nulls_first = self.next().upper == "FIRST"
        return desc, nulls_first

    # -- the select list -------------------------------------------------------------------
    def _select_items(self) -> list[_Item]:
        """The select list as written (resolved against the object once FROM names it):
        fields, and aggregate functions of a field with an optional alias."""
        items = []
        while True:
            tok = self.next()
            if tok.text == "(" and self.at_keyword("SELECT"):
                items.append(self._skip_subquery(tok))
            else:
                items.append(self._select_item(tok))
            if self.peek().text != ",":
                return items
            self.next()

    def _select_item(self, tok: Token) -> _Item:
        """A field, or ``FUNCTION(field) [alias]``, starting at ``tok``."""
        if tok.kind != "ident" or tok.upper == "FROM":
            raise self.unexpected(tok)
        arg = None
        if tok.upper == "FIELDS" and self.peek().text == "(":
            self.next()
            group = self.expect("ident")
            if group.upper not in FIELD_GROUPS:
                raise self.unexpected(group)
            self.expect("punct", ")")
            return _Item(tok, group=group.upper)
        if self.peek().text == "(":
            if tok.upper not in AGGREGATES:
                raise self.malformed_at(
                    tok.pos, f"Function {tok.text}() is not supported by the sandbox"
                )
            self.next()
            arg = self.expect("ident")
            self.expect("punct", ")")
        alias = None
        if self.peek().kind == "ident" and self.peek().upper not in _KEYWORDS:
            alias = self.next()
            if arg is None:  # only an aggregate takes an alias
                raise self.unexpected(alias)
        return _Item(tok, arg, alias)

    def _expand_field_groups(self, items: list[_Item]) -> list[_Item]:
        """``FIELDS(ALL|STANDARD|CUSTOM)`` as the fields of the queried object it names,
        in describe order, leaving out the ones the select list names itself."""
        if not any(item.group for item in items):
            return items
        assert self.obj is not None
        named = {item.head.upper for item in items if not item.group and item.sub is None}
        out: list[_Item] = []
        for item in items:
            if not item.group:
                out.append(item)
                continue
            for f in self.obj.fields:
                if FIELD_GROUPS[item.group](f) and f.name.upper() not in named:
                    named.add(f.name.upper())
                    out.append(_Item(Token("ident", f.name, item.head.pos)))
        return out

    def _check_field_group_limit(self, items: list[_Item], limit: int | None) -> None:
        """FIELDS(ALL) and FIELDS(CUSTOM) are bounded: Salesforce wants LIMIT 200 or less."""
        for item in items:
            if item.group in ("ALL", "CUSTOM") and (limit is None or limit > FIELDS_LIMIT):
                raise self.malformed_at(
                    item.head.pos,
                    f"The SOQL FIELDS function must have a LIMIT of at most {FIELDS_LIMIT}",
                )

    def _skip_subquery(self, tok: Token) -> _Item:
        """A relationship subquery, skipped to its closing parenthesis for now: its FROM
        names a relationship of the parent, known only once the outer FROM is read."""
        if self.nested:
            raise self.malformed_at(
                tok.pos, "the sandbox supports one level of parent-to-child subqueries"
            )
        start = self.i - 1
        depth = 1
        while depth:
            inner = self.next()
            if inner.kind == "eof":
                raise self.unexpected(inner)
            depth += {"(": 1, ")": -1}.get(inner.text, 0) if inner.kind == "punct" else 0
        return _Item(tok, sub=start)

    def _children(self, items: list[_Item]) -> tuple[ChildQuery, ...]:
        """The subqueries of the select list, each placed after the fields before it."""
        out: list[ChildQuery] = []
        position = 0
        for item in items:
            if item.sub is None:
                position += 1
                continue
            child = self._subquery(item.sub, position)
            if any(c.name == child.name for c in out):
                raise self.malformed_at(item.head.pos, f"duplicate field selected: {child.name}")
            out.append(child)
        return tuple(out)

    def _subquery(self, start: int, position: int) -> ChildQuery:
        """``(SELECT fields FROM Relationship [WHERE] [ORDER BY] [LIMIT n])`` read with the
        child object as the queried one; the parser then resumes where it was."""
        assert self.obj is not None
        parent, resume = self.obj, self.i
        self.i, self.nested = start + 1, True
        self.expect_keyword("SELECT")
        items = self._select_items()
        rel = self._from_name(
            lambda name: self.schema.child_relationship(parent.name, name),
            lambda name: (
                f"Didn't understand relationship '{name}' in FROM part of query "
                "call. If you are attempting to use a custom relationship, be sure to append the "
                "'__r' after the custom relationship name. Please reference your WSDL or the "
                "describe call for the appropriate names."
            ),
        )
        self.obj = rel.child
        fields = []
        for head, column in self._columns(self._expand_field_groups(items)):
            if not isinstance(column, FieldRef):
                raise self.malformed_at(head.pos, "the sandbox has no aggregates in a subquery")
            fields.append(column)
        where = None
        if self.at_keyword("WHERE"):
            self.next()
            where = self.condition()
        order = self._order_by() if self.at_keyword("ORDER") else ()
        limit = None
        if self.at_keyword("LIMIT"):
            self.next()
            limit = self.integer()
        self.expect("punct", ")")
        self.obj, self.i, self.nested = parent, resume, False
        assert rel.name is not None  # it was found by its name
        name = rel.name
        return ChildQuery(name, rel.child, rel.field, tuple(fields), where, order, limit, position)

    def _columns(self, items: list[_Item]) -> list[tuple[Token, FieldRef | Aggregate]]:
        """The select list resolved: a field selected twice is refused; an aggregate
        without an alias is named ``expr0``, ``expr1``... as Salesforce names them."""
        columns: list[tuple[Token, FieldRef | Aggregate]] = []
        seen: set[str] = set()
        unnamed = 0
        for item in items:
            if item.sub is not None:
                continue
            if item.arg is None:
                ref = self.field_ref(item.head)
                if ref.label.lower() in seen:
                    raise self.malformed_at(
                        item.head.pos, f"duplicate field selected: {item.head.text}"
                    )
                seen.add(ref.label.lower())
                columns.append((item.head, ref))
                continue
            ref = self.field_ref(item.arg)
            function = item.head.upper
            numeric = ref.field.type in NUMBER_TYPES
            if not ref.field.aggregatable or (function in ("SUM", "AVG") and not numeric):
                raise self.invalid_field(
                    item.arg,
                    f"field {ref.field.name} does not support aggregate operator {function}",
                )
            name = item.alias.text if item.alias else f"expr{unnamed}"
            unnamed += item.alias is None
            columns.append((item.head, Aggregate(function, ref, name)))
        return columns

    def _field_list(self) -> list[tuple[Token, FieldRef]]:
        refs = []
        while True:
            tok = self.expect("ident")
            refs.append((tok, self.field_ref(tok)))
            if self.peek().text != ",":
                return refs
            self.next()

    def _grouping(
        self,
        columns: list[tuple[Token, FieldRef | Aggregate]],
        group_by: list[tuple[Token, FieldRef]],
    ) -> Grouping:
        """An aggregate query: every selected field must be one it groups by."""
        for tok, ref in group_by:
            if not ref.field.groupable:
                raise self.invalid_field(
                    tok, f"field '{ref.field.name}' can not be grouped in a query call"
                )
        grouped = {ref.label.lower() for _, ref in group_by}
        for tok, column in columns:
            if isinstance(column, FieldRef) and column.label.lower() not in grouped:
                raise self.malformed_at(
                    tok.pos, f"Field must be grouped or aggregated: {column.field.name}"
                )
        return Grouping(tuple(ref for _, ref in group_by), tuple(c for _, c in columns))

    def _aggregate_order(self, grouping: Grouping) -> Grouping:
        """ORDER BY of an aggregate query: selected grouped fields or aggregates."""
        self.next()
        self.expect_keyword("BY")
        order = []
        while True:
            tok = self.expect("ident")
            arg = None
            if self.peek().text == "(":
                self.next()
                arg = self.expect("ident")
                self.expect("punct", ")")
            index = grouping.column_of(tok.upper, self.field_ref(arg or tok).label, arg is not None)
            if index is None:
                raise self.malformed_at(
                    tok.pos, "the sandbox orders an aggregate query by selected columns only"
                )
            order.append((index, *self._direction()))
            if self.peek().text != ",":
                return replace(grouping, order=tuple(order))
            self.next()

    def integer(self) -> int:
        tok = self.next()
        if tok.kind != "number" or not tok.text.isdigit():
            raise self.unexpected(tok)
        return int(tok.text)

    def field_ref(self, tok: Token) -> FieldRef:
        assert self.obj is not None
        obj = self.obj
        parts = tok.text.split(".")
        if len(parts) > 1 and parts[0].lower() == obj.name.lower():
            parts = parts[1:]  # SELECT Account.Name FROM Account
        if len(parts) == 1:
            f = obj.field(parts[0])
            if f is None:
                raise self.invalid_field(
                    tok,
                    f"No such column '{parts[0]}' on entity '{obj.name}'. If you are "
                    "attempting to use a custom field, be sure to append the '__c' after the "
                    "custom field name. Please reference your WSDL or the describe call for "
                    "the appropriate names.",
                )
            return FieldRef(f)
        if len(parts) == 2:
            via = obj.relationship(parts[0])
            target = self.schema.sobject(via.reference_to[0]) if via and via.reference_to else None
            if via is None or target is None:
                raise self.invalid_field(
                    tok,
                    f"Didn't understand relationship '{parts[0]}' in field path. If you are "
                    "attempting to use a custom relationship, be sure to append the '__r' "
                    "after the custom relationship name. Please reference your WSDL or the "
                    "describe call for the appropriate names.",
                )
            f = target.field(parts[1])
            if f is None:
                raise self.invalid_field(
                    tok,
                    f"No such column '{parts[1]}' on entity '{target.name}'. If you are "
                    "attempting to use a custom field, be sure to append the '__c' after the "
                    "custom field name. Please reference your WSDL or the describe call for "
                    "the appropriate names.",
                )
            return FieldRef(f, via, target)
        raise self.malformed_at(
            tok.pos, f"relationship path {tok.text} is deeper than the sandbox supports"
        )

    # -- conditions ------------------------------------------------------------------------
    def condition(self) -> Predicate:
        """A sequence of operands joined by AND or by OR - never both at one level."""
        items = [self.unary()]
        joiner: str | None = None
        while self.at_keyword("AND", "OR"):
            tok = self.next()
            if joiner is not None and tok.upper != joiner:
                raise self.unexpected(tok)
            joiner = tok.upper
            items.append(self.unary())
        if len(items) == 1:
            return items[0]
        parts = tuple(items)
        if joiner == "AND":
            both: Predicate = lambda doc, res: all(p(doc, res) for p in parts)  # noqa: E731
            keyed = [self.lookups[id(p)] for p in parts if id(p) in self.lookups]
            if keyed:
                self.lookups[id(both)] = min(keyed, key=lambda lookup: len(lookup.values))
            self._floor(both, parts, conjunction=True)
            return both
        either: Predicate = lambda doc, res: any(p(doc, res) for p in parts)  # noqa: E731
        self._floor(either, parts, conjunction=False)
        return either

    def _floor(
        self, predicate: Predicate, parts: tuple[Predicate, ...], *, conjunction: bool
    ) -> None:
        """The stamp lower bounds ``predicate`` implies: an AND implies the highest bound
        any operand implies per field; an OR only a field every branch bounds, at the
        lowest of those bounds (``S > X OR (S = X AND Id > Y)`` implies ``S >= X``)."""
        bounds = [self.floors.get(id(p), {}) for p in parts]
        merged: dict[str, str] = {}
        for name in STAMP_FIELDS:
            lows = [b[name] for b in bounds if name in b]
            if conjunction and lows:
                merged[name] = max(lows)
            elif not conjunction and len(lows) == len(parts):
                merged[name] = min(lows)
        if merged:
            self.floors[id(predicate)] = merged

    def unary(self) -> Predicate:
        if self.at_keyword("NOT"):
            self.next()
            inner = self.unary()
            return lambda doc, res: not inner(doc, res)
        if self.peek().text == "(":
            self.next()
            inner = self.condition()
            self.expect("punct", ")")
            return inner
        return self.comparison()

    def comparison(self) -> Predicate:
        tok = self.expect("ident")
        if tok.upper in _KEYWORDS:
            raise self.unexpected(tok)
        ref = self.field_ref(tok)
        f = ref.field
        negate = False
        if self.at_keyword("NOT") and self.peek(1).upper == "IN":
            self.next()
            negate = True
        if self.at_keyword("IN"):
            self.next()
            self.expect("punct", "(")
            values = []
            while True:
                values.append(self.literal(f))
                if self.peek().text != ",":
                    break
                self.next()
            self.expect("punct", ")")
            wanted = frozenset(value_key(f, v) for v in values)
            if negate:
                return lambda doc, res: value_key(f, ref.get(doc, res)) not in wanted
            member: Predicate = lambda doc, res: value_key(f, ref.get(doc, res)) in wanted  # noqa: E731
            return self._keyed(member, ref, values)
        if self.at_keyword("LIKE"):
            self.next()
            pattern_tok = self.next()
            if pattern_tok.kind != "string":
                raise self.unexpected(pattern_tok)
            if f.type not in TEXT_TYPES and f.type not in ID_TYPES:
                raise self.invalid_field(
                    tok, f"invalid operator on field: {f.name}: LIKE is for text fields"
                )
            regex = _like_regex(_unquote(pattern_tok.text, like=True))
            return lambda doc, res: _like(regex, ref.get(doc, res))
        op_tok = self.next()
        if op_tok.kind != "op":
            raise self.unexpected(op_tok)
        op = "!=" if op_tok.text == "<>" else op_tok.text
        after = self.peek()
        dated = f.type in ("date", "datetime")
        if dated and after.kind == "ident" and date_literals.is_literal(after.upper):
            return self._date_literal(ref, op)
        value = self.literal(f)
        if value is None:
            if op not in ("=", "!="):
                raise self.malformed_at(op_tok.pos, f"invalid operator {op} for null")
            if op == "=":
                return lambda doc, res: ref.get(doc, res) is None
            return lambda doc, res: ref.get(doc, res) is not None
        if f.type == "boolean" and op not in ("=", "!="):
            raise self.invalid_field(tok, f"invalid operator on boolean field: {f.name}")
        wanted = value_key(f, value)
        compare = _compare(ref, f, op, wanted)
        stamp = ref.via is None and f.name in STAMP_FIELDS and f.type == "datetime"
        if stamp and op in ("=", ">", ">=") and isinstance(value, str):
            # stamps are stored strings of one layout, so the literal's stored form is
            # both what the predicate compares with and the index's lower bound
            self.floors[id(compare)] = {f.name: value}
        return self._keyed(compare, ref, [value]) if op == "=" else compare

    def _date_literal(self, ref: FieldRef, op: str) -> Predicate:
        """``field <op> TODAY`` (or ``LAST_N_DAYS:30``...): the range is worked out when
        the query runs, not when it is parsed (parsed queries are cached across days)."""
        tok = self.next()
        name, n = tok.upper, None
        if date_literals.takes_number(name):
            if self.peek().text != ":":
                raise self.malformed_at(tok.pos, f"{tok.text} needs a number, as in {name}:7")
            self.next()
            n = self.integer()
        elif self.peek().text == ":":
            raise self.unexpected(self.peek())
        f = ref.field
        spans: dict[dt.date, tuple[str, str]] = {}

        def span() -> tuple[str, str]:
            today = dt.datetime.now(dt.UTC).date()
            if today not in spans:
                days = date_literals.days(name, n, today)
                if f.type == "date":
                    spans[today] = (days[0].isoformat(), days[1].isoformat())
                else:
                    start, end = date_literals.as_datetimes(days)
                    spans[today] = (format_datetime(start), format_datetime(end))
            return spans[today]

        def check(doc: Doc, res: Resolver) -> bool:
            value = ref.get(doc, res)
            start, end = span()
            if value is None:
                return op == "!="
            inside = start <= value < end
            return {
                "=": inside,
                "!=": not inside,
                "<": value < start,
                "<=": value < end,
                ">": value >= end,
                ">=": value >= start,
            }[op]

        return check

    def _keyed(self, predicate: Predicate, ref: FieldRef, values: list[Any]) -> Predicate:
        """Remember that ``predicate`` selects records by the keys ``values``."""
        f = ref.field
        if ref.via is None and (f.name == "Id" or f.external_id):
            self.lookups[id(predicate)] = Lookup(f, tuple(values))
        return predicate

    def literal(self, f: Field) -> Any:
        """The stored-form value of the next literal for field ``f``, or a type error."""
        tok = self.next()
        if tok.kind == "ident" and tok.upper == "NULL":
            return None
        kind = f.type
        if kind in TEXT_TYPES or kind in ID_TYPES:
            if tok.kind != "string":
                raise self._wrong_literal(tok, f, "string", quoted=True)
            text = _unquote(tok.text)
            if kind in ID_TYPES:
                full = ids.normalize(text)
                if full is None:
                    raise ApiError(
                        400,
                        "INVALID_QUERY_FILTER_OPERATOR",
                        _error_pointer(self.soql, tok.pos) + f"invalid ID field: {text}",
                    )
                return full
            return text
        if kind == "boolean":
            if tok.kind != "ident" or tok.upper not in ("TRUE", "FALSE"):
                raise self._wrong_literal(tok, f, "boolean", quoted=False)
            return tok.upper == "TRUE"
        if kind in NUMBER_TYPES:
            if tok.kind != "number":
                raise self._wrong_literal(tok, f, "number", quoted=False)
            return float(tok.text)
        if kind == "date":
            day = parse_date(tok.text) if tok.kind == "date" else None
            if day is None:
                raise self._wrong_literal(tok, f, "date", quoted=False)
            return day.isoformat()
        if kind == "datetime":
            moment = parse_datetime(tok.text) if tok.kind == "datetime" else None
            if moment is None:
                raise self._wrong_literal(tok, f, "dateTime", quoted=False)
            return format_datetime(moment)
        raise self.unexpected(tok)

    def _wrong_literal(self, tok: Token, f: Field, kind: str, *, quoted: bool) -> ApiError:
        should = "should be enclosed in quotes" if quoted else "should not be enclosed in quotes"
        return self.invalid_field(
            tok,
            f"value of filter criterion for field '{f.name}' must be of type {kind} and {should}",
        )


def _unquote(text: str, *, like: bool = False) -> str:
    body = text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            escaped = _ESCAPES.get(nxt, nxt)
            if like:  # \% \_ \\ stay escaped for the LIKE pattern
                out.append("\\\\" if nxt == "\\" else escaped)
            else:
                out.append(escaped[-1] if nxt in "%_" else escaped)
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _like_regex(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        parts.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _like(regex: re.Pattern[str], value: Any) -> bool:
    return value is not None and regex.fullmatch(str(value)) is not None


def value_key(f: Field, value: Any) -> Any:
    """The form values of ``f`` are compared in: text case-folded, everything else as is."""
    if value is None:
        return None
    if f.type in TEXT_TYPES:
        return str(value).casefold()
    if f.type in NUMBER_TYPES:
        return float(value)
    return value


def _compare(ref: FieldRef, f: Field, op: str, wanted: Any) -> Predicate:
    if op == "=":
        return lambda doc, res: value_key(f, ref.get(doc, res)) == wanted
    if op == "!=":
        return lambda doc, res: value_key(f, ref.get(doc, res)) != wanted

    def check(doc: Doc, res: Resolver) -> bool:
        value = value_key(f, ref.get(doc, res))
        if value is None:
            return False
        if op == "<":
            return bool(value < wanted)
        if op == "<=":
            return bool(value <= wanted)
        if op == ">":
            return bool(value > wanted)
        return bool(value >= wanted)

    return check


def sort_key(item: OrderItem) -> Callable[[Doc, Resolver], tuple[int, Any]]:
    """Key for one ORDER BY item; nulls placed by a rank that survives ``reverse``."""
    null_rank = int(item.nulls_first == item.desc)
    other = 1 - null_rank
    f = item.ref.field

    def key(doc: Doc, res: Resolver) -> tuple[int, Any]:
        value = value_key(f, item.ref.get(doc, res))
        return (null_rank, None) if value is None else (other, value)

    return key


@lru_cache(maxsize=512)
def parse(soql: str, schema: Schema = DEFAULT_SCHEMA) -> Query:
    """Parse and compile ``soql`` against the org's ``schema`` (cached: the same text is
    parsed once per schema)."""
    if not soql or not soql.strip():
        raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
    return _Parser(soql.strip(), schema).parse()
