"""Products and families in the DocumentStore, with Akeneo's validation and PATCH rules.

PATCH follows Akeneo's update rules: a property whose value is an object is merged with
the stored one (``values`` per attribute and per locale/scope, ``associations`` per type),
any other value replaces it. ``created``/``updated`` are maintained here in UTC at
Akeneo's one-second precision; a PATCH that changes nothing leaves ``updated`` alone, as
Akeneo does not save an unchanged product."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sandbox.faults import FaultState
from sandbox.pim.errors import PimError, bad_property, validation_failed, violation
from sandbox.pim.search import Predicate, parse_stamp
from sandbox.pim.settings import PimSettings
from sandbox.store import DocumentStore

PRODUCTS = "products"
FAMILIES = "families"

#: Properties a client may send; the read-only ones are accepted and ignored.
WRITABLE = frozenset(
    {
        "identifier",
        "enabled",
        "family",
        "categories",
        "groups",
        "parent",
        "values",
        "associations",
        "quantified_associations",
    }
)
READ_ONLY = frozenset({"created", "updated", "_links", "metadata", "completenesses", "uuid"})
_FORBIDDEN_IN_IDENTIFIER = (",", ";", "\n", "\r")


def now_stamp() -> str:
    """Now in Akeneo's format: UTC, whole seconds, ``+00:00`` offset."""
    return akeneo_stamp(datetime.now(UTC))


def akeneo_stamp(moment: datetime | str) -> str:
    if isinstance(moment, str):
        moment = parse_stamp(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def empty_product(identifier: str) -> dict[str, Any]:
    return {
        "identifier": identifier,
        "enabled": True,
        "family": None,
        "categories": [],
        "groups": [],
        "parent": None,
        "values": {},
        "associations": {},
        "quantified_associations": {},
    }


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, dict | list):
        return "array"
    if value is None:
        return "null"
    return type(value).__name__


class Catalog:
    """Validation against the families and attributes the PIM knows, and storage."""

    def __init__(self, store: DocumentStore, settings: PimSettings, faults: FaultState) -> None:
        self.store = store
        self.settings = settings
        self.faults = faults
        self.lock = threading.RLock()  # create() holds it across its upsert
        for code, label in settings.families.items():
            if store.get(FAMILIES, code) is None:
                store.put(FAMILIES, code, family_doc(code, label, list(settings.attributes)))

    # -- reads ------------------------------------------------------------------------
    def get(self, identifier: str) -> dict[str, Any] | None:
        return self.store.get(PRODUCTS, identifier)

    def iter_products(
        self, predicates: list[Predicate], after: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Matching products in identifier order (Akeneo's search-after order), strictly
        after ``after``. A scan of the collection: the emulator serves catalogues of
        thousands, not millions."""
        for doc in self.store.iter(PRODUCTS):
            if after is not None and doc["identifier"] <= after:
                continue
            if all(p(doc) for p in predicates):
                yield doc

    def family(self, code: str) -> dict[str, Any] | None:
        return self.store.get(FAMILIES, code)

    def families(self) -> Iterator[dict[str, Any]]:
        return self.store.iter(FAMILIES)

    def attributes(self) -> list[dict[str, Any]]:
        """The attributes as Akeneo lists them (code order): a simple select where the
        settings give options, else text; the first text one, ``name``, is the label."""
        return [
            {
                "code": code,
                "type": "pim_catalog_simpleselect" if options else "pim_catalog_text",
                "group": "marketing",
                "unique": False,
                "localizable": False,
                "scopable": False,
                "max_characters": None if options else self.settings.text_max_length,
            }
            for code, options in sorted(self.settings.attributes.items())
        ]

    # -- writes -----------------------------------------------------------------------
    def upsert(self, identifier: str, body: Any) -> int:
        """Create or update one product; 201 or 204, PimError with Akeneo's body else."""
        patch = self.validate(identifier, body)
        if self.faults.should_reject(identifier):
            raise validation_failed(
                [
                    violation(
                        "identifier",
                        f"The product {identifier} was rejected by the sandbox (reject fault).",
                    )
                ]
            )
        with self.lock:
            current = self.get(identifier)
            base = current if current is not None else empty_product(identifier)
            merged = merge(base, patch)
            if current is not None and merged == current:
                return 204
            stamp = now_stamp()
            merged["created"] = current["created"] if current is not None else stamp
            merged["updated"] = stamp
            self.store.put(PRODUCTS, identifier, merged)
        return 201 if current is None else 204

    def create(self, body: Any) -> str:
        """POST a new product: its identifier comes from the body, and must be free (Akeneo
        answers a taken one with a violation, never by updating the product)."""
        if not isinstance(body, dict):
            raise PimError(400, "Invalid json message received")
        identifier = body.get("identifier")
        if not isinstance(identifier, str) or not identifier.strip():
            raise validation_failed([violation("identifier", "This value should not be blank.")])
        with self.lock:
            if self.get(identifier) is not None:
                raise validation_failed(
                    [
                        violation(
                            "identifier",
                            "The same identifier is already set on another product",
                        )
                    ]
                )
            self.upsert(identifier, body)
        return identifier

    def delete(self, identifier: str) -> bool:
        """Remove a product for good (Akeneo keeps no recycle bin); False: none such."""
        with self.lock:
            return self.store.delete(PRODUCTS, identifier)

    def validate(self, identifier: str, body: Any) -> dict[str, Any]:
        """The writable part of a PATCH body, or PimError. Format errors (unknown property,
        wrong type, unknown family) are raised at once, as Akeneo's updater does; the
        constraint violations are collected into one "Validation failed." answer."""
        if not isinstance(body, dict):
            raise PimError(400, "Invalid json message received")
        for prop in body:
            if prop not in WRITABLE and prop not in READ_ONLY:
                raise bad_property(f'Property "{prop}" does not exist.')
        patch = {k: v for k, v in body.items() if k in WRITABLE}
        violations: list[dict[str, Any]] = []
        given = patch.get("identifier", identifier)
        if given != identifier:
            raise PimError(
                422,
                f'The identifier "{given}" provided in the request body must match the '
                f'identifier "{identifier}" provided in the url.',
            )
        patch["identifier"] = identifier
        violations += self._identifier_violations(identifier)
        if "enabled" in patch and not isinstance(patch["enabled"], bool):
            raise bad_property(
                f'Property "enabled" expects a boolean as data, '
                f'"{_type_name(patch["enabled"])}" given.'
            )
        if "family" in patch:
            family = patch["family"]
            if family is not None and not isinstance(family, str):
                raise bad_property(
                    f'Property "family" expects a string as data, "{_type_name(family)}" given.'
                )
            if family is not None and self.family(family) is None:
                raise bad_property(
                    f'Property "family" expects a valid family code. The family does not '
                    f'exist, "{family}" given.'
                )
        for prop in ("categories", "groups"):
            if prop in patch and not (
                isinstance(patch[prop], list) and all(isinstance(c, str) for c in patch[prop])
            ):
                raise bad_property(
                    f'Property "{prop}" expects an array of strings as data, '
                    f'"{_type_name(patch[prop])}" given.'
                )
        if patch.get("parent") is not None:
            raise bad_property(
                f'Property "parent" expects a valid product model code. The product model '
                f'does not exist, "{patch["parent"]}" given.'
            )
        for prop in ("associations", "quantified_associations"):
            if prop in patch and not isinstance(patch[prop], dict):
                raise bad_property(
                    f'Property "{prop}" expects an array as data, '
                    f'"{_type_name(patch[prop])}" given.'
                )
        if "values" in patch:
            violations += self._value_violations(patch["values"])
        if violations:
            raise validation_failed(violations)
        return patch

    def _identifier_violations(self, identifier: str) -> list[dict[str, Any]]:
        out = []
        if not identifier.strip():
            out.append(violation("identifier", "This value should not be blank."))
        if any(c in identifier for c in _FORBIDDEN_IN_IDENTIFIER):
            out.append(
                violation(
                    "identifier",
                    "This field should not contain any comma or semicolon or line breaks.",
                )
            )
        if identifier != identifier.strip():
            out.append(
                violation("identifier", "This value should not have leading or trailing spaces.")
            )
        if len(identifier) > self.settings.text_max_length:
            out.append(
                violation(
                    "identifier",
                    f"This value is too long. It should have {self.settings.text_max_length} "
                    "characters or less.",
                )
            )
        return out

    def _value_violations(self, values: Any) -> list[dict[str, Any]]:
        if not isinstance(values, dict):
            raise bad_property(
                f'Property "values" expects an array as data, "{_type_name(values)}" given.'
            )
        out: list[dict[str, Any]] = []
        for attribute, entries in values.items():
            if attribute not in self.settings.attributes:
                raise bad_property(f'Attribute "{attribute}" does not exist.')
            if not isinstance(entries, list) or not all(
                isinstance(e, dict) and {"locale", "scope", "data"} <= set(e) for e in entries
            ):
                raise bad_property(
                    f'Property "{attribute}" expects an array of values with the keys '
                    '"locale", "scope" and "data".'
                )
            options = self.settings.attributes[attribute]
            for entry in entries:
                locale, scope, data = entry["locale"], entry["scope"], entry["data"]
                where = {"attribute": attribute, "locale": locale, "scope": scope}
                if locale is not None:
                    out.append(
                        violation(
                            "values",
                            f'The {attribute} attribute does not require a locale, "{locale}" '
                            "was detected.",
                            **where,
                        )
                    )
                if scope is not None:
                    out.append(
                        violation(
                            "values",
                            f'The {attribute} attribute does not require a channel, "{scope}" '
                            "was detected.",
                            **where,
                        )
                    )
                if data is None:
                    continue
                if not isinstance(data, str):
                    raise bad_property(
                        f'Property "{attribute}" expects a string as data, '
                        f'"{_type_name(data)}" given.'
                    )
                if options is not None and data not in options:
                    out.append(
                        violation(
                            "values",
                            f"The {data} value is not in the {attribute} attribute option list.",
                            **where,
                        )
                    )
                elif len(data) > self.settings.text_max_length:
                    out.append(
                        violation(
                            "values",
                            "This value is too long. It should have "
                            f"{self.settings.text_max_length} characters or less.",
                            **where,
                        )
                    )
        return out


def merge(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Akeneo's PATCH rules applied to a stored product (neither argument is modified)."""
    out = copy.deepcopy(current)
    for prop, value in patch.items():
        if prop == "values":
            values = out.setdefault("values", {})
            for attribute, entries in value.items():
                kept = {(e["locale"], e["scope"]): e for e in values.get(attribute, [])}
                for entry in entries:
                    kept[(entry["locale"], entry["scope"])] = {
                        "locale": entry["locale"],
                        "scope": entry["scope"],
                        "data": copy.deepcopy(entry["data"]),
                    }
                values[attribute] = [e for e in kept.values() if e["data"] is not None]
                if not values[attribute]:
                    del values[attribute]
        elif isinstance(value, dict):
            merged = dict(out.get(prop) or {})
            merged.update(copy.deepcopy(value))
            out[prop] = merged
        else:
            out[prop] = copy.deepcopy(value)
    return out


def family_doc(code: str, label: str, attributes: list[str]) -> dict[str, Any]:
    """A family in Akeneo's standard format."""
    return {
        "code": code,
        "attributes": sorted(attributes),
        "attribute_as_label": "name",
        "attribute_as_image": None,
        "attribute_requirements": {},
        "labels": {"en_US": label},
    }
