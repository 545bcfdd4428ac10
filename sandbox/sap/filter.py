"""OData v2 ``$filter``: tokenizer, recursive-descent parser and a compiler to predicates.

Grammar (lowest precedence first)::

    or_expr   := and_expr ('or' and_expr)*
    and_expr  := cmp_expr ('and' cmp_expr)*
    cmp_expr  := add_expr (('eq'|'ne'|'lt'|'le'|'gt'|'ge') add_expr)?
    add_expr  := mul_expr (('add'|'sub') mul_expr)*
    mul_expr  := unary (('mul'|'div'|'mod') unary)*
    unary     := 'not' unary | '-' unary | primary
    primary   := literal | '(' or_expr ')' | func '(' args ')' | property

Literals: 'text' (quotes doubled), 12, 12L, 12.34, 12.34M, 1.5d, true/false/null,
datetime'...', datetimeoffset'...', guid'...', time'...'. Values are compared in the same
typed form the records are (see :func:`sandbox.sap.edm.typed`).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sandbox.sap.edm import EdmValueError, EntitySet, Prop, parse_iso, to_storage, typed
from sandbox.sap.repository import CHANGE_STAMP, KEY_SEP
from sandbox.store import ID_TOP


class FilterError(ValueError):
    """A malformed or unsupported $filter (answered with 400)."""


@dataclass(frozen=True)
class Token:
    kind: str  # 'str', 'num', 'typed', 'ident', 'op', '(', ')', ','
    value: Any
    pos: int


_TYPED_PREFIXES = ("datetimeoffset", "datetime", "guid", "time", "binary", "x")
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?([mMdDfFlL])?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_/.]*")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "(),":
            tokens.append(Token(ch, ch, i))
            i += 1
            continue
        if ch == "'":
            value, i = _read_quoted(text, i)
            tokens.append(Token("str", value, i))
            continue
        if ch.isdigit() or (
            ch == "-" and i + 1 < n and text[i + 1].isdigit() and _minus_is_sign(tokens)
        ):
            match = _NUMBER.match(text, i)
            assert match is not None
            tokens.append(Token("num", match.group(0), i))
            i = match.end()
            continue
        match = _IDENT.match(text, i)
        if match:
            word = match.group(0)
            end = match.end()
            if word.lower() in _TYPED_PREFIXES and end < n and text[end] == "'":
                value, i = _read_quoted(text, end)
                tokens.append(Token("typed", (word.lower(), value), match.start()))
                continue
            tokens.append(Token("ident", word, i))
            i = end
            continue
        if ch == "-":
            tokens.append(Token("op", "-", i))
            i += 1
            continue
        raise FilterError(f"Invalid token at position {i} in filter expression: {text[i:]!r}")
    return tokens


def _minus_is_sign(tokens: list[Token]) -> bool:
    if not tokens:
        return True
    last = tokens[-1]
    return last.kind in ("(", ",", "op") or (
        last.kind == "ident" and last.value.lower() in _KEYWORDS
    )


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    i = start + 1
    out: list[str] = []
    while i < len(text):
        if text[i] == "'":
            if i + 1 < len(text) and text[i + 1] == "'":
                out.append("'")
                i += 2
                continue
            return "".join(out), i + 1
        out.append(text[i])
        i += 1
    raise FilterError(f"Unterminated string literal at position {start}")


_COMPARE = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}
_ARITH = {"add": operator.add, "sub": operator.sub, "mul": operator.mul}
_KEYWORDS = {"and", "or", "not", *_COMPARE, *_ARITH, "div", "mod"}

Record = dict[str, Any]
Expr = Callable[[Record], Any]


def _div(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        return a // b
    return Decimal(a) / Decimal(b)


def _funcs() -> dict[str, tuple[int, Callable[..., Any]]]:
    def s(v: Any) -> str:
        return "" if v is None else str(v)

    return {
        "substringof": (2, lambda needle, hay: s(needle) in s(hay)),
        "startswith": (2, lambda hay, pre: s(hay).startswith(s(pre))),
        "endswith": (2, lambda hay, suf: s(hay).endswith(s(suf))),
        "tolower": (1, lambda v: s(v).lower()),
        "toupper": (1, lambda v: s(v).upper()),
        "trim": (1, lambda v: s(v).strip()),
        "length": (1, lambda v: len(s(v))),
        "indexof": (2, lambda hay, needle: s(hay).find(s(needle))),
        "substring": (3, lambda v, start, length=None: s(v)[int(start) : int(start) + int(length)]),
        "concat": (2, lambda a, b: s(a) + s(b)),
        "year": (1, lambda v: None if v is None else _dt(v).year),
        "month": (1, lambda v: None if v is None else _dt(v).month),
        "day": (1, lambda v: None if v is None else _dt(v).day),
    }


def _dt(ms: int) -> Any:
    from sandbox.sap.edm import ms_to_datetime

    return ms_to_datetime(int(ms))


FUNCS = _funcs()


class Parser:
    """Turns tokens into a closure over a storage-form record."""

    def __init__(self, text: str, entity_set: EntitySet) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0
        self.es = entity_set

    def parse(self) -> Expr:
        if not self.tokens:
            raise FilterError("Empty filter expression")
        expr = self.or_expr()
        if self.pos != len(self.tokens):
            tok = self.tokens[self.pos]
            raise FilterError(f"Unexpected '{tok.value}' at position {tok.pos} in filter")
        return expr

    # -- helpers
    def peek_word(self) -> str | None:
        if self.pos < len(self.tokens) and self.tokens[self.pos].kind == "ident":
            return str(self.tokens[self.pos].value).lower()
        return None

    def take(self, kind: str) -> Token:
        if self.pos >= len(self.tokens):
            raise FilterError(f"Filter expression ended early, expected {kind}")
        tok = self.tokens[self.pos]
        if tok.kind != kind:
            raise FilterError(f"Expected {kind} at position {tok.pos}, found '{tok.value}'")
        self.pos += 1
        return tok

    # -- grammar
    def or_expr(self) -> Expr:
        left = self.and_expr()
        while self.peek_word() == "or":
            self.pos += 1
            right = self.and_expr()
            left = (lambda a, b: lambda r: bool(a(r)) or bool(b(r)))(left, right)
        return left

    def and_expr(self) -> Expr:
        left = self.cmp_expr()
        while self.peek_word() == "and":
            self.pos += 1
            right = self.cmp_expr()
            left = (lambda a, b: lambda r: bool(a(r)) and bool(b(r)))(left, right)
        return left

    def cmp_expr(self) -> Expr:
        left = self.add_expr()
        word = self.peek_word()
        if word in _COMPARE:
            self.pos += 1
            right = self.add_expr()
            return _comparison(_COMPARE[word], left, right)
        return left

    def add_expr(self) -> Expr:
        left = self.mul_expr()
        while self.peek_word() in ("add", "sub"):
            op = _ARITH[str(self.peek_word())]
            self.pos += 1
            right = self.mul_expr()
            left = _arith(op, left, right)
        return left

    def mul_expr(self) -> Expr:
        left = self.unary()
        while self.peek_word() in ("mul", "div", "mod"):
            word = str(self.peek_word())
            self.pos += 1
            right = self.unary()
            op = _ARITH.get(word) or (_div if word == "div" else operator.mod)
            left = _arith(op, left, right)
        return left

    def unary(self) -> Expr:
        if self.peek_word() == "not":
            self.pos += 1
            inner = self.unary()
            return lambda r: not inner(r)
        tok = self.tokens[self.pos] if self.pos < len(self.tokens) else None
        if tok is not None and tok.kind == "op" and tok.value == "-":
            self.pos += 1
            inner = self.unary()
            return lambda r: None if inner(r) is None else -inner(r)
        return self.primary()

    def primary(self) -> Expr:
        if self.pos >= len(self.tokens):
            raise FilterError("Filter expression ended early")
        tok = self.tokens[self.pos]
        self.pos += 1
        if tok.kind == "(":
            inner = self.or_expr()
            self.take(")")
            return inner
        if tok.kind == "str":
            value: Any = tok.value
            return lambda r: value
        if tok.kind == "num":
            num = _number(tok.value)
            return lambda r: num
        if tok.kind == "typed":
            lit = _typed_literal(*tok.value)
            return lambda r: lit
        if tok.kind == "ident":
            word = tok.value
            low = word.lower()
            if low in ("true", "false"):
                flag = low == "true"
                return lambda r: flag
            if low == "null":
                return lambda r: None
            if self.pos < len(self.tokens) and self.tokens[self.pos].kind == "(":
                return self.call(low, tok)
            return self.property(word, tok)
        raise FilterError(f"Unexpected '{tok.value}' at position {tok.pos} in filter")

    def call(self, name: str, tok: Token) -> Expr:
        if name not in FUNCS:
            raise FilterError(f"Function '{name}' is not supported in $filter")
        arity, fn = FUNCS[name]
        self.take("(")
        args = [self.or_expr()]
        while self.pos < len(self.tokens) and self.tokens[self.pos].kind == ",":
            self.pos += 1
            args.append(self.or_expr())
        self.take(")")
        if len(args) < arity - (1 if name == "substring" else 0) or len(args) > arity:
            raise FilterError(f"Function '{name}' called with {len(args)} arguments")
        return lambda r: fn(*(a(r) for a in args))

    def property(self, name: str, tok: Token) -> Expr:
        prop = self.es.prop_map.get(name)
        if prop is None:
            raise FilterError(
                f"Property '{name}' not found in type '{self.es.type_name}' (position {tok.pos})"
            )
        return lambda r: typed(prop, r.get(name))


def _number(text: str) -> Any:
    suffix = text[-1].lower() if text[-1].isalpha() else ""
    body = text[:-1] if suffix else text
    try:
        if suffix in ("d", "f"):
            return float(body)
        if suffix == "l" or ("." not in body and "e" not in body.lower()):
            return int(body)
        return Decimal(body)
    except (ValueError, InvalidOperation) as exc:
        raise FilterError(f"Invalid number literal {text!r}") from exc


def _typed_literal(prefix: str, value: str) -> Any:
    try:
        if prefix in ("datetime", "datetimeoffset"):
            return parse_iso(value)
    except EdmValueError as exc:
        raise FilterError(f"Invalid {prefix} literal '{value}'") from exc
    if prefix == "time":  # Edm.Time: compared in its storage form, PT12H05M00S
        try:
            return to_storage(Prop("time", "Edm.Time"), value)
        except EdmValueError as exc:
            raise FilterError(f"Invalid time literal '{value}'") from exc
    if prefix == "guid":
        if not re.fullmatch(r"[0-9a-fA-F-]{36}", value):
            raise FilterError(f"Invalid guid literal '{value}'")
        return value.lower()
    return value


def _comparison(op: Callable[[Any, Any], bool], left: Expr, right: Expr) -> Expr:
    def compare(r: Record) -> bool:
        a, b = left(r), right(r)
        if a is None or b is None:
            if op is operator.eq:
                return a is b
            if op is operator.ne:
                return a is not b
            return False
        try:
            return bool(op(a, b))
        except TypeError as exc:
            raise FilterError(f"Cannot compare {a!r} with {b!r}") from exc

    return compare


def _arith(op: Callable[[Any, Any], Any], left: Expr, right: Expr) -> Expr:
    def run(r: Record) -> Any:
        a, b = left(r), right(r)
        if a is None or b is None:
            return None
        try:
            return op(a, b)
        except (TypeError, ArithmeticError) as exc:
            raise FilterError(f"Invalid arithmetic on {a!r} and {b!r}") from exc

    return run


def compile_filter(text: str, entity_set: EntitySet) -> Callable[[Record], bool]:
    expr = Parser(text, entity_set).parse()
    return lambda record: bool(expr(record))


_LOWER_BOUNDS = ("ge", "gt", "eq")
_UPPER_BOUNDS = {"le": True, "eq": True, "lt": False}


def _flat_terms(text: str) -> tuple[list[tuple[str, str, Token]], set[str]] | None:
    """A filter made only of ``name op literal`` terms joined by and/or (no parentheses,
    functions or not): its terms as (name, lower-case operator, literal token) and the
    joins it uses; None for any other shape (those stay on the full scan)."""
    try:
        tokens = tokenize(text)
    except FilterError:
        return None
    if len(tokens) % 4 != 3:
        return None
    terms: list[tuple[str, str, Token]] = []
    joins: set[str] = set()
    for i in range(0, len(tokens), 4):
        name, op, lit = tokens[i : i + 3]
        if i:
            join = tokens[i - 1]
            if join.kind != "ident":
                return None
            joins.add(str(join.value).lower())
        if name.kind != "ident" or op.kind != "ident" or lit.kind not in ("str", "num", "typed"):
            return None
        terms.append((str(name.value), str(op.value).lower(), lit))
    return terms, joins


def first_key_ranges(text: str, entity_set: EntitySet) -> list[tuple[str, str]] | None:
    """The id ranges a filter on the first (string) key confines its matches to, or None
    when it has neither of the two shapes S/4 answers from the primary index:

    - ``K op 'v' and K op 'v' ...`` (op ge/gt/le/lt/eq): one range;
    - ``K eq 'v' or K eq 'w' ...``: one range per value (the connector's tax numbers of a
      page of partners).

    Scanning the whole entity set for these made the emulator, not the hub, the slow part
    of a 100,000-customer load. The ranges are a superset, in id order and disjoint: the
    compiled predicate still decides each document. A value holding a control character
    (ids join key values with one) is left to the full scan."""
    if not entity_set.keys:
        return None
    key = entity_set.keys[0]
    prop = entity_set.prop_map.get(key)
    if prop is None or prop.type != "Edm.String":
        return None
    flat = _flat_terms(text)
    if flat is None:
        return None
    terms: list[tuple[str, str]] = []
    for name, word, lit in flat[0]:
        if name != key or lit.kind != "str":
            return None
        if word not in _LOWER_BOUNDS and word not in _UPPER_BOUNDS:
            return None
        value = str(lit.value)
        if any(ch <= KEY_SEP for ch in value):
            return None
        terms.append((word, value))
    joins = flat[1]
    if joins == {"or"}:
        if any(word != "eq" for word, _ in terms):
            return None
        # exactly the ids whose first key is v: 'v' itself or 'v<sep>...'
        return [(v, v + KEY_SEP + ID_TOP) for v in sorted({v for _, v in terms})]
    if joins - {"and"}:
        return None
    low, high = "", ID_TOP
    for word, value in terms:
        if word in _LOWER_BOUNDS:
            low = max(low, value)
        if word in _UPPER_BOUNDS:
            high = min(high, value + ID_TOP if _UPPER_BOUNDS[word] else value)
    return [(low, high)]


def change_floor(text: str, entity_set: EntitySet) -> int | None:
    """The lowest change stamp (epoch ms) a filter admits, when it is a conjunction of
    simple terms one of which bounds ``LastChangeDateTime`` from below (the connector's
    "changed since" reads); None otherwise. The emulator reads those documents from an
    index on the stamp, as S/4 answers a delta query, instead of scanning the whole set:
    a scan made every incremental read cost as much as the book. One millisecond below
    the literal, so sub-millisecond literals never drop a match; the compiled predicate
    still decides each document."""
    if CHANGE_STAMP not in entity_set.prop_map:
        return None
    flat = _flat_terms(text)
    if flat is None or flat[1] - {"and"}:
        return None
    floor: int | None = None
    for name, word, lit in flat[0]:
        if name != CHANGE_STAMP or word not in _LOWER_BOUNDS:
            continue
        if lit.kind != "typed" or lit.value[0] not in ("datetime", "datetimeoffset"):
            return None
        try:
            low = parse_iso(lit.value[1]) - 1
        except EdmValueError:
            return None
        floor = low if floor is None else max(floor, low)
    return floor
