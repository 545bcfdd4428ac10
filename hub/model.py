"""The canonical model: the hub's one shape for each entity, whatever system it came from.

Every system's record is mapped into these models before it touches the golden record, so
the rules here are the hub's contract: money is integer minor units in the record's ISO
4217 currency, timestamps are timezone-aware UTC, codes are closed vocabularies. Cross-field
arithmetic (an invoice total that does not add up) is deliberately *not* a validation rule:
such a record is valid input whose drift the reconciliation must see and report.
"""

from __future__ import annotations

import calendar
import enum
from datetime import UTC, date, datetime
from functools import lru_cache
from itertools import pairwise
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hub.currency import is_currency


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _currency(value: str) -> str:
    if not is_currency(value):
        raise ValueError(f"unknown ISO 4217 currency {value!r}")
    return value


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]
CurrencyCode = Annotated[str, AfterValidator(_currency)]
_UTC_DATETIME = TypeAdapter(UtcDatetime)


@lru_cache(maxsize=1024)
def dump_utc_datetime(value: datetime) -> str:
    """An aware timestamp as the canonical records hold it (``model_dump(mode="json")``).
    Cached: the records of a batch share few stamps, and aware datetimes are equal (and
    hash alike) exactly when they are the same instant, which has one UTC form."""
    result: str = _UTC_DATETIME.dump_python(_UTC_DATETIME.validate_python(value), mode="json")
    return result


Key = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=255)]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
MinorUnits = Annotated[int, Field(ge=0, le=10**15)]
SignedMinorUnits = Annotated[int, Field(ge=-(10**15), le=10**15)]
Quantity = Annotated[int, Field(ge=0, le=10**9)]
TaxId = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9 .\-/]{1,30}$")]


class _Canonical(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)
    entity: ClassVar[str]
    key_field: ClassVar[str] = "hub_id"


class CustomerStatus(enum.StrEnum):
    ACTIVE = "active"
    BLOCKED = "blocked"
    INACTIVE = "inactive"


class PaymentTerms(enum.StrEnum):
    """Canonical payment terms; each system's codes map onto these in mappings/."""

    DUE_ON_RECEIPT = "due_on_receipt"
    NET15 = "net15"
    NET30 = "net30"
    NET45 = "net45"
    NET60 = "net60"
    NET90 = "net90"


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)
    street: ShortText
    city: ShortText
    postal_code: Annotated[str, StringConstraints(max_length=16)]
    country: CountryCode
    region: Annotated[str, StringConstraints(max_length=64)] | None = None


class Product(_Canonical):
    """A sellable SKU as the PIM defines it."""

    entity: ClassVar[str] = "product"
    key_field: ClassVar[str] = "sku"
    sku: Key
    name: Name
    sellable: bool = True
    lifecycle: Literal["active", "retired"] = "active"
    unit: Annotated[str, StringConstraints(min_length=1, max_length=8)] = "EA"
    family: ShortText | None = None
    updated_at: UtcDatetime


class Customer(_Canonical):
    """A B2B account: legal entity, billing terms and dunning position."""

    entity: ClassVar[str] = "customer"
    hub_id: Key
    legal_name: Name
    tax_id: TaxId | None = None
    billing_address: Address
    shipping_address: Address | None = None
    currency: CurrencyCode
    payment_terms: PaymentTerms = PaymentTerms.NET30
    credit_limit_minor: MinorUnits | None = None
    parent_id: Key | None = None
    status: CustomerStatus = CustomerStatus.ACTIVE
    dunning_level: Annotated[int, Field(ge=0, le=4)] = 0
    segment: Literal["smb", "mid_market", "enterprise"] | None = None
    updated_at: UtcDatetime

    @model_validator(mode="after")
    def _not_own_parent(self) -> Self:
        if self.parent_id is not None and self.parent_id == self.hub_id:
            raise ValueError("parent_id: a customer cannot be its own parent")
        return self


class PriceKind(enum.StrEnum):
    FLAT = "flat"
    PER_UNIT = "per_unit"
    GRADUATED = "graduated"  # each unit priced by the tier it falls in
    VOLUME = "volume"  # all units priced by the tier the total falls in
    USAGE = "usage"  # per unit of metered usage in the period


class Tier(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    up_to: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="inclusive upper bound; None for the last tier"
    )
    unit_amount_minor: MinorUnits = 0
    flat_amount_minor: MinorUnits = 0


class Price(BaseModel):
    """How a subscription item is charged per billing period."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: PriceKind
    flat_amount_minor: MinorUnits = 0
    unit_amount_minor: MinorUnits = 0
    tiers: tuple[Tier, ...] = ()
    discount_bps: Annotated[int, Field(ge=0, le=10_000)] = 0

    @model_validator(mode="after")
    def _tiers_fit_kind(self) -> Self:
        tiered = self.kind in (PriceKind.GRADUATED, PriceKind.VOLUME)
        if tiered and not self.tiers:
            raise ValueError(f"tiers: a {self.kind.value} price needs at least one tier")
        if not tiered and self.tiers:
            raise ValueError(f"tiers: a {self.kind.value} price takes no tiers")
        if not self.tiers:
            return self
        bounds = [t.up_to for t in self.tiers]
        if bounds[-1] is not None:
            raise ValueError("tiers: the last tier must be open-ended (up_to = null)")
        closed = [b for b in bounds[:-1] if b is not None]
        if len(closed) != len(bounds) - 1:
            raise ValueError("tiers: only the last tier may be open-ended")
        if closed != sorted(set(closed)):
            raise ValueError("tiers: up_to bounds must be strictly increasing")
        return self

    def amount_minor(self, quantity: int) -> int:
        """Charge for one period at ``quantity`` units, after discount (half-up on the
        discount, the usual billing convention)."""
        if quantity < 0:
            raise ValueError("quantity must not be negative")
        if self.kind is PriceKind.FLAT:
            gross = self.flat_amount_minor
        elif self.kind in (PriceKind.PER_UNIT, PriceKind.USAGE):
            gross = self.flat_amount_minor + self.unit_amount_minor * quantity
        elif self.kind is PriceKind.VOLUME:
            tier = next(t for t in self.tiers if t.up_to is None or quantity <= t.up_to)
            gross = tier.flat_amount_minor + tier.unit_amount_minor * quantity
        else:
            gross, lower = 0, 0
            for tier in self.tiers:
                upper = quantity if tier.up_to is None else min(quantity, tier.up_to)
                if upper > lower:
                    gross += tier.flat_amount_minor + tier.unit_amount_minor * (upper - lower)
                lower = tier.up_to or lower
                if tier.up_to is None or quantity <= tier.up_to:
                    break
        discount = (gross * self.discount_bps + 5_000) // 10_000
        return gross - discount


class BillingPeriod(enum.StrEnum):
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"

    @property
    def months(self) -> int:
        return {"month": 1, "quarter": 3, "year": 12}[self.value]


class SubscriptionStatus(enum.StrEnum):
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    PAUSED = "paused"
    CANCELED = "canceled"


#: Subscription statuses that take deliveries (trials ship hardware, as billing plans it):
#: the delivery planner keeps their allocations, the reconciliation checks them.
DELIVERING_STATUSES = ("active", "trialing", "past_due")


def add_months(day: date, months: int) -> date:
    """``day`` plus whole months, clipped to the month's last day (Jan 31 + 1 = Feb 28)."""
    total = day.year * 12 + day.month - 1 + months
    year, month = divmod(total, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


class ProrationPolicy(enum.StrEnum):
    """How a mid-period change of an item is billed (``hub.pricing``)."""

    NONE = "none"  # the period stays billed as it was; the new version from the next period
    DAILY = "daily"  # credit the unused days of the old version, charge them at the new one
    BILLING_CYCLE = "billing_cycle"  # changes take effect at the next period start only


#: The whole of a bundle's price, in basis points: its components' shares sum to this.
BUNDLE_SHARES_BPS = 10_000


class BundleComponent(BaseModel):
    """One component of a bundle item: ``quantity`` units of ``sku`` per bundle unit, and
    its ``share_bps`` of the bundle's price (revenue allocation; the shares sum to
    ``BUNDLE_SHARES_BPS``). The bundle is billed at its own price; the shares only split
    that amount (``hub.pricing.bundle_allocation``), and the WMS ships the components."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)
    sku: Key
    quantity: Annotated[int, Field(ge=1, le=10**6)] = 1
    share_bps: Annotated[int, Field(ge=0, le=BUNDLE_SHARES_BPS)]


def _bundle(components: tuple[BundleComponent, ...]) -> tuple[BundleComponent, ...]:
    """A bundle's components: distinct SKUs whose shares sum to the whole price (a lost
    or invented basis point would lose or invent revenue in every allocation)."""
    if not components:
        return components
    skus = [c.sku for c in components]
    if len(set(skus)) != len(skus):
        raise PydanticCustomError(
            "bundle_components_unique",
            "bundle: a component SKU appears twice ({skus})",
            {"skus": ", ".join(skus)},
        )
    total = sum(c.share_bps for c in components)
    if total != BUNDLE_SHARES_BPS:
        raise PydanticCustomError(
            "bundle_shares_sum",
            "bundle: component shares must sum to {whole} bps, not {total}",
            {"whole": BUNDLE_SHARES_BPS, "total": total},
        )
    return components


Bundle = Annotated[tuple[BundleComponent, ...], AfterValidator(_bundle)]


class SubscriptionItem(BaseModel):
    """One version of a subscription item. ``effective_from`` / ``effective_to`` are the
    first and last day (both inclusive) the version is in effect; None is open-ended.
    Ended versions are kept: a subscription may hold several versions of one ``item_id``
    whose ranges do not overlap."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)
    item_id: Key
    sku: Key
    quantity: Quantity
    price: Price
    effective_from: date | None = None
    effective_to: date | None = None
    #: the last day (inclusive) ``price.discount_bps`` applies: a service period starting
    #: after it is billed at the full price; None: the discount does not expire
    discount_until: date | None = None
    #: a bundle's components (empty: not a bundle); the item is billed at ``price``
    bundle: Bundle = ()

    @model_validator(mode="after")
    def _range(self) -> Self:
        if (
            self.effective_from is not None
            and self.effective_to is not None
            and self.effective_to < self.effective_from
        ):
            raise PydanticCustomError(
                "effective_range",
                "effective_to: must not be before effective_from ({lo} > {hi})",
                {"lo": str(self.effective_from), "hi": str(self.effective_to)},
            )
        return self

    def in_effect(self, day: date) -> bool:
        """Whether this version is in effect on ``day``."""
        return (self.effective_from is None or self.effective_from <= day) and (
            self.effective_to is None or day <= self.effective_to
        )


class UsageRecord(BaseModel):
    """Metered usage of one meter over one period (both days inclusive), as billing's
    meter recorded it; billed in arrears by a ``usage`` line of the same SKU and period.
    ``meter`` is the SKU of the usage item it meters."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)
    meter: Key
    period_start: date
    period_end: date
    quantity: Quantity

    @model_validator(mode="after")
    def _period(self) -> Self:
        if self.period_end < self.period_start:
            raise PydanticCustomError(
                "usage_period",
                "period_end: must not be before period_start ({lo} > {hi})",
                {"lo": str(self.period_start), "hi": str(self.period_end)},
            )
        return self


#: The longest contract term, in months.
MAX_TERM_MONTHS = 120


class RampStep(BaseModel):
    """One step of a ramped contract: from its first day, item ``item_id`` is billed at
    ``price`` and/or ``quantity`` instead of the item's own (a field left None keeps the
    item's). The first day is either ``starts_on`` or the first day of contract year
    ``contract_year`` (counted from the subscription's ``start_date``); exactly one is
    given. A step's price is untiered (flat, per unit or usage): a tiered ramp is a new
    item version, which the price history already handles."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)
    item_id: Key
    starts_on: date | None = None
    contract_year: Annotated[int, Field(ge=1, le=MAX_TERM_MONTHS // 12)] | None = None
    price: Price | None = None
    quantity: Quantity | None = None

    @model_validator(mode="after")
    def _one_start_and_a_change(self) -> Self:
        if (self.starts_on is None) == (self.contract_year is None):
            raise PydanticCustomError(
                "ramp_step_start", "starts_on: give either starts_on or contract_year, not both"
            )
        if self.price is None and self.quantity is None:
            raise PydanticCustomError(
                "ramp_step_change", "price: a ramp step changes the price, the quantity or both"
            )
        if self.price is not None and self.price.tiers:
            raise PydanticCustomError(
                "ramp_step_untiered",
                "price: a ramp step's price takes no tiers (a tiered change is an item version)",
            )
        return self

    def first_day(self, contract_start: date) -> date:
        """The day the step takes effect in a contract starting on ``contract_start``."""
        if self.starts_on is not None:
            return self.starts_on
        return add_months(contract_start, 12 * ((self.contract_year or 1) - 1))


class Subscription(_Canonical):
    entity: ClassVar[str] = "subscription"
    hub_id: Key
    customer_id: Key
    contract_number: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None
    currency: CurrencyCode
    billing_period: BillingPeriod = BillingPeriod.MONTH
    status: SubscriptionStatus
    start_date: date
    end_date: date | None = None
    trial_end: date | None = None
    auto_renew: bool = True
    renewal_date: date | None = None
    proration_policy: ProrationPolicy = ProrationPolicy.DAILY
    #: the first day of the current or latest pause (no service, nothing billed) and the
    #: day service resumes (None: not scheduled); both kept after the pause ends. A paused
    #: status without ``paused_at`` is not rejected: SAP maps the status but not the
    #: dates, and its records must still validate
    paused_at: date | None = None
    resume_at: date | None = None
    items: tuple[SubscriptionItem, ...] = Field(min_length=1)
    usage_records: tuple[UsageRecord, ...] = ()
    #: contract terms: the amount the customer commits to be billed (minor units of
    #: ``currency``) over ``commitment_term_months`` from ``start_date``; both or neither
    commitment_minor: MinorUnits | None = None
    commitment_term_months: Annotated[int, Field(ge=1, le=MAX_TERM_MONTHS)] | None = None
    #: the ramp schedule, each item's steps in the order they take effect
    ramp: tuple[RampStep, ...] = ()
    updated_at: UtcDatetime

    @model_validator(mode="after")
    def _contract_terms(self) -> Self:
        if (self.commitment_minor is None) != (self.commitment_term_months is None):
            raise PydanticCustomError(
                "commitment_term",
                "commitment_term_months: a commitment needs its term and a term its amount",
            )
        items = {i.item_id for i in self.items}
        last: dict[str, date] = {}
        for n, step in enumerate(self.ramp):
            if step.item_id not in items:
                raise PydanticCustomError(
                    "ramp_item",
                    "ramp[{n}].item_id: {item_id} is not an item of the subscription",
                    {"n": n, "item_id": step.item_id},
                )
            first = step.first_day(self.start_date)
            if step.item_id in last and first <= last[step.item_id]:
                raise PydanticCustomError(
                    "ramp_order",
                    "ramp[{n}]: steps of item {item_id} must start on strictly later days "
                    "({first} is not after {before})",
                    {"n": n, "item_id": step.item_id, "first": str(first),
                     "before": str(last[step.item_id])},
                )  # fmt: skip
            last[step.item_id] = first
        return self

    @model_validator(mode="after")
    def _dates_and_items(self) -> Self:
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError("end_date: must not be before start_date")
        if self.resume_at is not None and self.paused_at is None:
            raise PydanticCustomError(
                "resume_needs_pause", "resume_at: a resume date needs a pause date (paused_at)"
            )
        if (
            self.resume_at is not None
            and self.paused_at is not None
            and self.resume_at <= self.paused_at
        ):
            raise PydanticCustomError(
                "resume_after_pause",
                "resume_at: must be after paused_at ({paused} >= {resume})",
                {"paused": str(self.paused_at), "resume": str(self.resume_at)},
            )
        if self.trial_end is not None and self.trial_end < self.start_date:
            raise ValueError("trial_end: must not be before start_date")
        if self.status is SubscriptionStatus.TRIALING and self.trial_end is None:
            raise ValueError("trial_end: a trialing subscription needs a trial end date")
        versions: dict[str, list[SubscriptionItem]] = {}
        for item in self.items:
            versions.setdefault(item.item_id, []).append(item)
        for item_id, found in versions.items():
            ordered = sorted(found, key=lambda i: i.effective_from or date.min)
            for before, after in pairwise(ordered):
                if (
                    before.effective_to is None
                    or after.effective_from is None
                    or before.effective_to >= after.effective_from
                ):
                    raise PydanticCustomError(
                        "item_versions_overlap",
                        "items[{item_id}].effective_from: versions of one item_id must not "
                        "overlap ({a} to {b} and {c} to {d})",
                        {
                            "item_id": item_id,
                            "a": str(before.effective_from or "open"),
                            "b": str(before.effective_to or "open"),
                            "c": str(after.effective_from or "open"),
                            "d": str(after.effective_to or "open"),
                        },
                    )
        return self


class AllocationStatus(enum.StrEnum):
    RESERVED = "reserved"
    PICKED = "picked"
    SHIPPED = "shipped"
    RELEASED = "released"


class InventoryAllocation(_Canonical):
    """Stock reserved for one subscription item's delivery cycle at one location."""

    entity: ClassVar[str] = "allocation"
    hub_id: Key
    subscription_id: Key
    subscription_item_id: Key
    sku: Key
    location: Annotated[str, StringConstraints(min_length=1, max_length=16)]
    quantity: Annotated[int, Field(ge=1, le=10**9)]
    delivery_date: date
    status: AllocationStatus = AllocationStatus.RESERVED
    updated_at: UtcDatetime


class InvoiceStatus(enum.StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


class LineKind(enum.StrEnum):
    RECURRING = "recurring"  # one service period of an item, at the version in effect
    PRORATION = "proration"  # a mid-period change of an item (``proration_of``), net
    USAGE = "usage"
    ONE_TIME = "one_time"


class InvoiceLine(BaseModel):
    """One invoice line. ``period_start`` / ``period_end`` are the service period, both
    days inclusive; a proration line covers the change day to the end of the period and
    names the item whose change caused it in ``proration_of``."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)
    line_no: Annotated[int, Field(ge=1, le=10_000)]
    sku: Key | None = None
    description: ShortText = ""
    quantity: Quantity = 1
    unit_amount_minor: SignedMinorUnits = 0
    amount_minor: SignedMinorUnits
    period_start: date | None = None
    period_end: date | None = None
    kind: LineKind = LineKind.RECURRING
    proration_of: Key | None = None

    @model_validator(mode="after")
    def _proration_names_its_item(self) -> Self:
        if self.kind is LineKind.PRORATION and self.proration_of is None:
            raise PydanticCustomError(
                "proration_of_required",
                "proration_of: a proration line names the item whose change caused it",
            )
        return self


class DunningOutcome(enum.StrEnum):
    RETRIED = "retried"  # the collection attempt failed; dunning goes on
    PAID = "paid"  # the invoice was recovered
    WRITTEN_OFF = "written_off"  # given up: the invoice is uncollectible


class DunningEvent(BaseModel):
    """One step of an invoice's dunning run: the stage reached on day ``on`` and, once
    known, what came of it (None: pending)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    stage: Annotated[int, Field(ge=1, le=4)]
    on: date
    outcome: DunningOutcome | None = None


class Invoice(_Canonical):
    entity: ClassVar[str] = "invoice"
    hub_id: Key
    number: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    customer_id: Key
    subscription_id: Key | None = None
    currency: CurrencyCode
    lines: tuple[InvoiceLine, ...] = ()
    subtotal_minor: SignedMinorUnits
    tax_minor: MinorUnits = 0
    total_minor: SignedMinorUnits
    amount_paid_minor: MinorUnits = 0
    issue_date: date
    due_date: date
    status: InvoiceStatus
    dunning_stage: Annotated[int, Field(ge=0, le=4)] = 0
    #: the dunning run, ordered by day; the last event's stage is ``dunning_stage``
    dunning_events: tuple[DunningEvent, ...] = ()
    updated_at: UtcDatetime

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.due_date < self.issue_date:
            raise ValueError("due_date: must not be before issue_date")
        days = [e.on for e in self.dunning_events]
        if days != sorted(days):
            raise PydanticCustomError(
                "dunning_events_order", "dunning_events: events must be ordered by day (on)"
            )
        if self.dunning_events and self.dunning_events[-1].stage != self.dunning_stage:
            raise PydanticCustomError(
                "dunning_stage_last_event",
                "dunning_stage: must equal the last dunning event's stage ({last} != {stage})",
                {"last": self.dunning_events[-1].stage, "stage": self.dunning_stage},
            )
        numbers = [line.line_no for line in self.lines]
        if len(numbers) != len(set(numbers)):
            raise ValueError("lines: line_no values must be unique within an invoice")
        return self

    @model_validator(mode="before")
    @classmethod
    def _paid_in_full(cls, data: Any) -> Any:
        """An open invoice paid in full (SAP's payment clearing, say) is paid, everywhere:
        billing and Salesforce learn it from the golden record."""
        if isinstance(data, dict) and data.get("status") == InvoiceStatus.OPEN.value:
            try:
                total, paid = int(data["total_minor"]), int(data.get("amount_paid_minor") or 0)
            except (KeyError, TypeError, ValueError):
                return data  # the field validators say what is wrong
            if 0 < total <= paid:
                return {**data, "status": InvoiceStatus.PAID.value}
        return data

    def arithmetic_errors(self) -> list[str]:
        """Cross-field sums that do not add up (reported by reconciliation, not rejected)."""
        errors = []
        if self.lines and sum(line.amount_minor for line in self.lines) != self.subtotal_minor:
            errors.append("subtotal_minor != sum of line amounts")
        if self.subtotal_minor + self.tax_minor != self.total_minor:
            errors.append("total_minor != subtotal_minor + tax_minor")
        return errors


#: The entities, in their sync order: parents before children (a record's references
#: resolve within one pass). The one list of entities; every other list derives from it.
ENTITIES: dict[str, type[_Canonical]] = {
    cls.entity: cls for cls in (Product, Customer, Subscription, InventoryAllocation, Invoice)
}
#: The entities' names in sync order.
ENTITY_ORDER: tuple[str, ...] = tuple(ENTITIES)


class FieldError(BaseModel):
    field: str
    rule: str
    message: str


class CanonicalValidationError(ValueError):
    """A record that breaks the canonical model; names entity, key, field and rule so an
    engineer can find and fix the source record."""

    def __init__(self, entity: str, key: str | None, errors: list[FieldError]) -> None:
        self.entity = entity
        self.key = key
        self.errors = errors
        detail = "; ".join(f"field '{e.field}': {e.message} (rule: {e.rule})" for e in errors)
        super().__init__(f"{entity} {key or '<no key>'}: {detail}")


def validate_record(entity: str, data: dict[str, Any]) -> _Canonical:
    """Validate a mapped record into its canonical model or raise
    :class:`CanonicalValidationError`."""
    try:
        model = ENTITIES[entity]
    except KeyError:
        raise ValueError(f"unknown entity {entity!r}; known: {sorted(ENTITIES)}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        key = data.get(model.key_field) if isinstance(data, dict) else None
        raise CanonicalValidationError(
            entity, None if key is None else str(key), _field_errors(exc)
        ) from None


def _field_errors(exc: ValidationError) -> list[FieldError]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if not loc and ":" in message:  # model-level rules name their field first
            loc, message = (part.strip() for part in message.split(":", 1))
        out.append(FieldError(field=loc or "<record>", rule=err["type"], message=message))
    return out
