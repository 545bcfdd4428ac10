"""Compare rules (``CompareRule`` from the mappings) as SQL predicates over two columns.

Each predicate is true exactly when the two values drift beyond the rule, and is never
NULL: two NULLs agree, one NULL against a value drifts. Floating tolerances get a relative
epsilon of 1e-9 so that ``|1.1 - 1.0| <= 0.1`` holds the way a person reads it.
"""

from __future__ import annotations

from hub.mapping.spec import CompareRule

EXACT = CompareRule()
_NUMERIC = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UBIGINT",
    "UINTEGER",
    "USMALLINT",
    "UTINYINT",
    "FLOAT",
    "DOUBLE",
    "REAL",
)


def is_money(field: str) -> bool:
    """Money is integer minor units in fields named ``*_minor`` (the canonical model's rule)."""
    return field.rsplit(".", 1)[-1].endswith("_minor")


def severity(field: str, rule: CompareRule) -> str:
    """Explicit severity wins; otherwise text that only differs cosmetically (fold) and
    clock noise (timestamp) warn, and everything else - money above all - is an error."""
    if rule.severity is not None:
        return rule.severity
    if is_money(field):
        return "error"
    return "warning" if rule.rule in ("fold", "timestamp") else "error"


def _fold(expr: str) -> str:
    return f"lower(trim(regexp_replace(CAST({expr} AS VARCHAR), '\\s+', ' ', 'g')))"


def _num(expr: str) -> str:
    return f"TRY_CAST({expr} AS DOUBLE)"


def _instant(expr: str) -> str:
    return f"epoch(TRY_CAST({expr} AS TIMESTAMPTZ))"


def drift_predicate(g: str, s: str, rule: CompareRule, g_type: str, s_type: str) -> str:
    """SQL that is true when golden value ``g`` and system value ``s`` differ under ``rule``."""
    if rule.claim_only:  # nothing stated is no claim: compare only what the system states
        plain = rule.model_copy(update={"claim_only": False})
        return f"(({s}) IS NOT NULL AND {drift_predicate(g, s, plain, g_type, s_type)})"
    one_null = f"(({g}) IS NULL) <> (({s}) IS NULL)"
    tol = float(rule.tolerance)
    if rule.rule == "exact":
        if g_type == s_type or (g_type in _NUMERIC and s_type in _NUMERIC):
            return f"(({g}) IS DISTINCT FROM ({s}))"
        return f"(CAST({g} AS VARCHAR) IS DISTINCT FROM CAST({s} AS VARCHAR))"
    if rule.rule == "fold":
        return f"({_fold(g)} IS DISTINCT FROM {_fold(s)})"
    if rule.rule == "abs":
        diff = f"abs({_num(g)} - {_num(s)})"
        bound = f"({tol} + 1e-9 * greatest(abs({_num(g)}), abs({_num(s)}), 1))"
        return f"({one_null} OR coalesce({diff} > {bound}, false))"
    if rule.rule == "rel":
        diff = f"abs({_num(g)} - {_num(s)})"
        bound = f"({tol} * abs({_num(g)}) + 1e-9 * greatest(abs({_num(g)}), abs({_num(s)}), 1))"
        return f"({one_null} OR coalesce({diff} > {bound}, false))"
    if rule.rule == "timestamp":
        diff = f"abs({_instant(g)} - {_instant(s)})"
        unparsable = f"(({_instant(g)}) IS NULL) <> (({_instant(s)}) IS NULL)"
        return f"({one_null} OR {unparsable} OR coalesce({diff} > {tol + 1e-6}, false))"
    raise ValueError(f"unknown compare rule {rule.rule!r}")
