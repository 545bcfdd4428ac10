"""Settings of the Salesforce emulator: the connected app, the integration user and the
org's limits. Every field has a sandbox default so ``SalesforceSettings()`` works in
tests; ``hub sandbox up`` passes per-data-dir credentials and the JWT key pair."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from sandbox.salesforce.schema import CURRENCIES


class SalesforceSettings(BaseModel):
    """One org with one connected app and one integration user."""

    client_id: str = "3MVG9sandboxHubConnectedAppConsumerKey"
    client_secret: str = "sandbox-client-secret"  # noqa: S105 - sandbox default, documented
    username: str = "integration@hub.sandbox"
    private_key_file: str = Field(
        default="", description="PEM key the hub signs JWT assertions with (not read here)"
    )
    public_key_file: str = Field(
        default="",
        description="PEM public key or X.509 certificate that verifies JWT bearer assertions; "
        "empty disables the JWT bearer flow",
    )
    api_version: str = Field(default="62.0", description="newest version the org serves")
    min_api_version: str = Field(
        default="31.0",
        description="oldest version the org serves; older (retired) ones answer 410 GONE",
    )
    daily_api_limit: int = Field(default=1_000_000, ge=1)
    token_ttl_seconds: int = Field(default=7200, ge=1)
    query_batch_size: int = Field(default=2000, ge=200, le=2000)
    multi_currency: bool = Field(
        default=True,
        description="multi-currency org: every object has CurrencyIsoCode; off, no object "
        "has it (describe omits it, SOQL and writes naming it answer INVALID_FIELD) and "
        "default_currency is the currency of every amount",
    )
    default_currency: str = Field(
        default="USD", description="Organization.DefaultCurrencyIsoCode (corporate currency)"
    )
    state_country_picklists: bool = Field(
        default=False,
        description="State and Country/Territory Picklists: Account addresses get "
        "BillingCountryCode/ShippingCountryCode (ISO codes the org allows) and the country "
        "text must be a country's name",
    )
    pubsub_retention_seconds: float = Field(
        default=72 * 3600,
        gt=0,
        description="Pub/Sub API: how long change events are kept (Salesforce: 72 hours); "
        "a CUSTOM replay id older than this fails the subscription",
    )
    pubsub_keepalive_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Pub/Sub API: an idle subscription gets an empty FetchResponse (the "
        "keepalive, with latest_replay_id) after this long (Salesforce: 270 s)",
    )
    org_id: str = "00D8H0000000000UAA"
    user_id: str = "0058H0000000000QAA"

    @field_validator("default_currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        if value not in CURRENCIES:
            raise ValueError(f"default_currency must be one of {', '.join(CURRENCIES)}")
        return value

    #: JWT audiences accepted besides the emulator's own URL
    audiences: tuple[str, ...] = (
        "https://login.salesforce.com",
        "https://test.salesforce.com",
    )
