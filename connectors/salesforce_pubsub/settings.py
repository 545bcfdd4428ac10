"""The Pub/Sub API's two settings, read from the environment into ``SalesforceSettings``
(the one settings object of the Salesforce system): ``SALESFORCE_PUBSUB_URL`` (host:port of
the gRPC endpoint) and ``SALESFORCE_PUBSUB_BATCH`` (events per FetchRequest, 1 to 100).
They are declared here rather than on ``SalesforceSettings``' fields because only the
change-event subscriber reads them; the REST connector and its Dagster resource do not."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from connectors.salesforce import (
    PUBSUB_BATCH_VARIABLE,
    PUBSUB_MAX_BATCH,
    PUBSUB_URL,
    PUBSUB_URL_VARIABLE,
    SalesforceSettings,
)
from connectors.settings import env_var, read_settings


def parse_batch(raw: str) -> int | None:
    """``SALESFORCE_PUBSUB_BATCH``: a whole number from 1 to 100; blank: the default."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= PUBSUB_MAX_BATCH:
        raise ValueError(
            f"{PUBSUB_BATCH_VARIABLE}={raw!r}: give a whole number of events from 1 to "
            f"{PUBSUB_MAX_BATCH} (the Pub/Sub API never has more than {PUBSUB_MAX_BATCH} "
            "requested events outstanding)"
        )
    return value


def parse_url(raw: str) -> str | None:
    """``SALESFORCE_PUBSUB_URL``: ``host:port`` (an ``https://`` prefix is tolerated)."""
    text = raw.strip()
    if not text:
        return None
    for scheme in ("https://", "grpcs://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
    text = text.rstrip("/")
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or "/" in text:
        raise ValueError(
            f"{PUBSUB_URL_VARIABLE}={raw!r}: give host:port of the Pub/Sub API, e.g. {PUBSUB_URL}"
        )
    return text


@dataclass
class PubSubEnv:
    url: str = field(
        default=PUBSUB_URL,
        metadata=env_var(
            PUBSUB_URL_VARIABLE,
            parse=parse_url,
            doc=f"host:port of the Salesforce Pub/Sub API (gRPC, TLS; default {PUBSUB_URL})",
        ),
    )
    batch: int = field(
        default=PUBSUB_MAX_BATCH,
        metadata=env_var(
            PUBSUB_BATCH_VARIABLE,
            parse=parse_batch,
            doc=f"events a change-event subscriber requests at a time (1 to {PUBSUB_MAX_BATCH})",
        ),
    )


def settings_from_env(env: Mapping[str, str]) -> SalesforceSettings:
    """The Salesforce settings with the Pub/Sub API's settings read as well."""
    pubsub = read_settings(PubSubEnv, env)
    return read_settings(SalesforceSettings, env, pubsub_url=pubsub.url, pubsub_batch=pubsub.batch)
