"""The billing store's schema: a subscription-billing database as SQLAlchemy Core tables.

Billing is the system of record for subscriptions, prices, invoices and dunning, so its
tables look like a real billing product's: its own integer ids and account/invoice
numbers, foreign keys between its own rows, and the other systems' numbers kept as plain
columns (``sap_customer_number``, ``salesforce_account_id``) because that is how a billing
product stores cross references. ``hub_id`` is the hub's external id on every synced table
(nullable: billing may create a record before the hub has seen it).

Conventions the billing connector relies on:

* money is ``BIGINT`` minor units next to a ``CHAR(3)`` ISO 4217 currency, never a float;
* every table has ``updated_at`` (timezone-aware UTC; SQLite stores it as naive UTC) and an
  index on ``(updated_at, id)`` for keyset-paginated incremental reads; on SQLite, which
  compares the stamp normalized (``connectors.sql_source.sqlite_stamp_key``: rows stamped
  by a trigger's ``CURRENT_TIMESTAMP`` have no fraction), a second index on that
  expression and ``id`` serves them;
* child rows (subscription items, invoice lines) carry ``updated_at`` too, and their parent
  is touched whenever they change;
* a subscription item is kept in versions (``effective_from`` / ``effective_to``, both
  days inclusive, NULL open-ended): a price or quantity change ends one row and starts
  another with the same ``item_id``, so ``(subscription_id, item_id)`` names the item, not
  a row. An allocation references its subscription item by that natural key; as it is not
  unique, the billing connector checks the reference (an allocation's item must exist,
  replacing the items must not orphan an allocation) where a foreign key used to;
* pause and resume are days on the subscription (``paused_at`` / ``resume_at``); metered
  usage (``usage_records``) and an invoice's dunning run (``dunning_events``) are JSON
  lists on their parent row, as the price tiers are; an item's discount may end
  (``discount_until``, the last day it applies);
* a bundle item keeps its components (``bundle``: ``[{"sku", "quantity", "share_bps"}]``,
  empty for a plain item) and a subscription its contract terms (``commitment_minor`` in
  its currency over ``commitment_term_months``, both NULL without a commitment; ``ramp``:
  ``[{"item_id", "starts_on" | "contract_year", "price", "quantity"}]``), JSON lists
  again;
* invoice lines have a ``kind`` (recurring, proration, usage, one_time); a proration
  line names the item whose change caused it (``proration_of``, an ``item_id``).

:func:`create_billing_schema` also adds the columns a store created before them lacks
(nullable or with a server default), so an existing billing database keeps working.

The same tables work on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.schema import CreateIndex

from connectors.sql_source import sqlite_stamp_key

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING)


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC in and out on every backend (SQLite has no zone: naive UTC there)."""

    impl = sa.DateTime
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: billing stores timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def _id() -> sa.Column[int]:
    # BIGINT on PostgreSQL; SQLite only auto-increments an INTEGER primary key.
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)


def _money(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(
        name, sa.BigInteger, nullable=nullable, server_default=None if nullable else "0"
    )


def _currency() -> sa.Column[str]:
    return sa.Column("currency", sa.CHAR(3), nullable=False)


def _stamps() -> list[sa.Column[datetime]]:
    return [
        sa.Column("created_at", UtcDateTime(), nullable=False, default=_now),
        sa.Column("updated_at", UtcDateTime(), nullable=False, default=_now, onupdate=_now),
    ]


def _cursor_index(table: str) -> sa.Index:
    return sa.Index(f"ix_{table}_updated_at_id", "updated_at", "id")


def _address(prefix: str, required: bool) -> list[sa.Column[str]]:
    return [
        sa.Column(f"{prefix}_street", sa.String(255), nullable=not required),
        sa.Column(f"{prefix}_city", sa.String(255), nullable=not required),
        sa.Column(f"{prefix}_postal_code", sa.String(16), nullable=not required),
        sa.Column(f"{prefix}_country", sa.CHAR(2), nullable=not required),
        sa.Column(f"{prefix}_region", sa.String(64)),
    ]


accounts = sa.Table(
    "accounts",
    metadata,
    _id(),
    sa.Column("hub_id", sa.String(64), unique=True),
    sa.Column("account_number", sa.String(32), nullable=False, unique=True),
    sa.Column("sap_customer_number", sa.String(10), index=True),
    sa.Column("salesforce_account_id", sa.String(18), index=True),
    sa.Column("legal_name", sa.String(255), nullable=False),
    sa.Column("tax_id", sa.String(32)),
    *_address("billing", required=True),
    *_address("shipping", required=False),
    _currency(),
    sa.Column("payment_terms", sa.String(16), nullable=False, server_default="net30"),
    _money("credit_limit_minor", nullable=True),
    sa.Column("parent_account_id", sa.BigInteger, sa.ForeignKey("accounts.id"), index=True),
    sa.Column("status", sa.String(16), nullable=False, server_default="active"),
    sa.Column("dunning_level", sa.SmallInteger, nullable=False, server_default="0"),
    *_stamps(),
    sa.CheckConstraint("dunning_level BETWEEN 0 AND 4", name="dunning_level"),
    sa.CheckConstraint("status IN ('active', 'blocked', 'inactive')", name="status"),
    _cursor_index("accounts"),
)

products = sa.Table(
    "products",
    metadata,
    _id(),
    sa.Column("sku", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("sellable", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("lifecycle", sa.String(16), nullable=False, server_default="active"),
    sa.Column("unit", sa.String(8), nullable=False, server_default="EA"),
    sa.Column("family", sa.String(64)),
    *_stamps(),
    _cursor_index("products"),
)

#: The price catalogue: list prices per SKU, currency and billing period. Subscription
#: items copy the price they were sold at (plus any discount), as billing products do, so
#: a list-price change never rewrites running contracts.
prices = sa.Table(
    "prices",
    metadata,
    _id(),
    sa.Column("code", sa.String(64), nullable=False, unique=True),
    sa.Column("sku", sa.String(64), sa.ForeignKey("products.sku"), nullable=False, index=True),
    _currency(),
    sa.Column("billing_period", sa.String(8), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    _money("flat_amount_minor"),
    _money("unit_amount_minor"),
    sa.Column("tiers", sa.JSON, nullable=False, default=list),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    *_stamps(),
    sa.CheckConstraint("kind IN ('flat', 'per_unit', 'graduated', 'volume', 'usage')", name="kind"),
    sa.UniqueConstraint("sku", "currency", "billing_period"),
    _cursor_index("prices"),
)

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    _id(),
    sa.Column("hub_id", sa.String(64), unique=True),
    sa.Column(
        "account_id", sa.BigInteger, sa.ForeignKey("accounts.id"), nullable=False, index=True
    ),
    sa.Column("contract_number", sa.String(40)),
    _currency(),
    sa.Column("billing_period", sa.String(8), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("start_date", sa.Date, nullable=False),
    sa.Column("end_date", sa.Date),
    sa.Column("trial_end", sa.Date),
    sa.Column("auto_renew", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("renewal_date", sa.Date),
    sa.Column("canceled_at", UtcDateTime()),
    sa.Column("proration_policy", sa.String(16), nullable=False, server_default="daily"),
    sa.Column("paused_at", sa.Date),
    sa.Column("resume_at", sa.Date),
    # metered usage, [{"meter", "period_start", "period_end", "quantity"}] (meter: a SKU)
    sa.Column("usage_records", sa.JSON, nullable=False, default=list, server_default="[]"),
    # contract terms: the committed amount over the term, and the ramp schedule
    _money("commitment_minor", nullable=True),
    sa.Column("commitment_term_months", sa.SmallInteger),
    sa.Column("ramp", sa.JSON, nullable=False, default=list, server_default="[]"),
    *_stamps(),
    sa.CheckConstraint(
        "status IN ('trialing', 'active', 'past_due', 'paused', 'canceled')", name="status"
    ),
    sa.CheckConstraint(
        "proration_policy IN ('none', 'daily', 'billing_cycle')", name="proration_policy"
    ),
    sa.CheckConstraint("billing_period IN ('month', 'quarter', 'year')", name="period"),
    sa.CheckConstraint(
        "(commitment_minor IS NULL) = (commitment_term_months IS NULL)", name="commitment"
    ),
    _cursor_index("subscriptions"),
)

subscription_items = sa.Table(
    "subscription_items",
    metadata,
    _id(),
    sa.Column(
        "subscription_id",
        sa.BigInteger,
        sa.ForeignKey("subscriptions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("item_id", sa.String(64), nullable=False),
    sa.Column("sku", sa.String(64), nullable=False, index=True),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("price_id", sa.BigInteger, sa.ForeignKey("prices.id")),
    sa.Column("price_kind", sa.String(16), nullable=False),
    _money("flat_amount_minor"),
    _money("unit_amount_minor"),
    sa.Column("tiers", sa.JSON, nullable=False, default=list),
    sa.Column("discount_bps", sa.Integer, nullable=False, server_default="0"),
    sa.Column("effective_from", sa.Date),
    sa.Column("effective_to", sa.Date),
    sa.Column("discount_until", sa.Date),
    # a bundle's components, [{"sku", "quantity", "share_bps"}]; [] for a plain item
    sa.Column("bundle", sa.JSON, nullable=False, default=list, server_default="[]"),
    *_stamps(),
    sa.CheckConstraint(
        "price_kind IN ('flat', 'per_unit', 'graduated', 'volume', 'usage')", name="kind"
    ),
    sa.CheckConstraint("discount_bps BETWEEN 0 AND 10000", name="discount"),
    sa.CheckConstraint("quantity >= 0", name="quantity"),
    sa.CheckConstraint(
        "effective_from IS NULL OR effective_to IS NULL OR effective_to >= effective_from",
        name="effective_range",
    ),
    sa.UniqueConstraint("subscription_id", "item_id", "effective_from"),
    _cursor_index("subscription_items"),
)

invoices = sa.Table(
    "invoices",
    metadata,
    _id(),
    sa.Column("hub_id", sa.String(64), unique=True),
    sa.Column("number", sa.String(40), nullable=False, unique=True),
    sa.Column(
        "account_id", sa.BigInteger, sa.ForeignKey("accounts.id"), nullable=False, index=True
    ),
    sa.Column("subscription_id", sa.BigInteger, sa.ForeignKey("subscriptions.id"), index=True),
    _currency(),
    _money("subtotal_minor"),
    _money("tax_minor"),
    _money("total_minor"),
    _money("amount_paid_minor"),
    sa.Column("issue_date", sa.Date, nullable=False),
    sa.Column("due_date", sa.Date, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("dunning_stage", sa.SmallInteger, nullable=False, server_default="0"),
    # the dunning run, [{"stage", "on", "outcome"}] ordered by day
    sa.Column("dunning_events", sa.JSON, nullable=False, default=list, server_default="[]"),
    sa.Column("paid_at", UtcDateTime()),
    sa.Column("sap_billing_document", sa.String(10), index=True),
    sa.Column("salesforce_invoice_id", sa.String(18), index=True),
    *_stamps(),
    sa.CheckConstraint(
        "status IN ('draft', 'open', 'paid', 'void', 'uncollectible')", name="status"
    ),
    sa.CheckConstraint("dunning_stage BETWEEN 0 AND 4", name="dunning_stage"),
    sa.CheckConstraint("due_date >= issue_date", name="dates"),
    sa.Index("ix_invoices_status_due_date", "status", "due_date"),
    _cursor_index("invoices"),
)

invoice_lines = sa.Table(
    "invoice_lines",
    metadata,
    _id(),
    sa.Column(
        "invoice_id",
        sa.BigInteger,
        sa.ForeignKey("invoices.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("line_no", sa.Integer, nullable=False),
    sa.Column("sku", sa.String(64)),
    sa.Column("description", sa.String(255), nullable=False, server_default=""),
    sa.Column("quantity", sa.BigInteger, nullable=False, server_default="1"),
    _money("unit_amount_minor"),
    _money("amount_minor"),
    sa.Column("period_start", sa.Date),
    sa.Column("period_end", sa.Date),
    sa.Column("kind", sa.String(16), nullable=False, server_default="recurring"),
    sa.Column("proration_of", sa.String(64)),
    *_stamps(),
    sa.CheckConstraint("kind IN ('recurring', 'proration', 'usage', 'one_time')", name="line_kind"),
    sa.UniqueConstraint("invoice_id", "line_no"),
    _cursor_index("invoice_lines"),
)

allocations = sa.Table(
    "allocations",
    metadata,
    _id(),
    sa.Column("hub_id", sa.String(64), unique=True),
    sa.Column("subscription_id", sa.BigInteger, sa.ForeignKey("subscriptions.id"), nullable=False),
    sa.Column("item_id", sa.String(64), nullable=False),
    sa.Column("sku", sa.String(64), nullable=False, index=True),
    sa.Column("location", sa.String(16), nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("delivery_date", sa.Date, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="reserved"),
    sa.Column("wms_allocation_id", sa.String(32), index=True),
    *_stamps(),
    sa.CheckConstraint("quantity >= 1", name="quantity"),
    sa.CheckConstraint("status IN ('reserved', 'picked', 'shipped', 'released')", name="status"),
    sa.Index("ix_allocations_subscription_id_item_id", "subscription_id", "item_id"),
    _cursor_index("allocations"),
)

#: Tables in dependency order (parents first): the order to load or truncate them in.
TABLES: tuple[sa.Table, ...] = (
    accounts,
    products,
    prices,
    subscriptions,
    subscription_items,
    invoices,
    invoice_lines,
    allocations,
)


def _stamp_key_index(table: sa.Table) -> sa.Index:
    """SQLite only: the incremental read orders by the normalized stamp, which the plain
    ``(updated_at, id)`` index cannot serve (each page would scan and sort the table)."""
    index = sa.Index(
        f"ix_{table.name}_stamp_key_id", sqlite_stamp_key(table.c.updated_at), table.c.id
    )
    return index.ddl_if(dialect="sqlite")


#: The SQLite indexes on the normalized stamp, one per table.
STAMP_KEY_INDEXES: tuple[sa.Index, ...] = tuple(_stamp_key_index(t) for t in TABLES)


#: Columns added after the first billing stores were created: (table, column), each
#: nullable or with a server default so ``ALTER TABLE ... ADD COLUMN`` fills old rows.
ADDED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("subscriptions", "proration_policy"),
    ("subscription_items", "effective_from"),
    ("subscription_items", "effective_to"),
    ("invoice_lines", "kind"),
    ("invoice_lines", "proration_of"),
    ("subscriptions", "paused_at"),
    ("subscriptions", "resume_at"),
    ("subscriptions", "usage_records"),
    ("subscription_items", "discount_until"),
    ("invoices", "dunning_events"),
    ("subscription_items", "bundle"),
    ("subscriptions", "commitment_minor"),
    ("subscriptions", "commitment_term_months"),
    ("subscriptions", "ramp"),
)


def _add_missing_columns(engine: Engine) -> None:
    """Add the ``ADDED_COLUMNS`` an existing store lacks (their constraints are not
    retrofitted; a store created fresh has them)."""
    inspector = sa.inspect(engine)
    with engine.begin() as conn:
        for table_name, column_name in ADDED_COLUMNS:
            present = {c["name"] for c in inspector.get_columns(table_name)}
            if column_name in present:
                continue
            column = metadata.tables[table_name].c[column_name]
            ddl = f"{column.type.compile(engine.dialect)}"
            if column.server_default is not None:
                default = column.server_default.arg  # type: ignore[attr-defined]
                ddl += f" NOT NULL DEFAULT '{default}'"
            conn.execute(sa.text(f"ALTER TABLE {table_name} ADD COLUMN {column_name} {ddl}"))


def create_billing_schema(engine: Engine) -> None:
    """Create every billing table and index that does not exist yet (idempotent): a store
    created before an index or a column (``ADDED_COLUMNS``) joined the schema gets it too."""
    metadata.create_all(engine)
    _add_missing_columns(engine)
    if engine.dialect.name == "sqlite":
        # SQLAlchemy does not reflect expression indexes, so it cannot check for them
        with engine.begin() as conn:
            for index in STAMP_KEY_INDEXES:
                conn.execute(CreateIndex(index, if_not_exists=True))


def reset_id_sequences(engine: Engine) -> None:
    """After a bulk load with explicit ids, move PostgreSQL's identity sequences past the
    highest id so the next ordinary insert does not collide (SQLite needs nothing)."""
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        for table in TABLES:
            highest = sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0) + 1)
            sequence = sa.func.pg_get_serial_sequence(table.name, "id")
            conn.execute(sa.select(sa.func.setval(sequence, highest.scalar_subquery(), False)))
