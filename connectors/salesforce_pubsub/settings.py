"""The Pub/Sub API's two settings, ``SALESFORCE_PUBSUB_URL`` (host:port of the gRPC
endpoint) and ``SALESFORCE_PUBSUB_BATCH`` (events per FetchRequest, 1 to 100), are fields
of ``SalesforceSettings`` (the one settings object of the Salesforce system, in
``connectors.salesforce``); this module only keeps the subscriber's entry point."""

from __future__ import annotations

from collections.abc import Mapping

from connectors.salesforce import (
    SalesforceSettings,
    parse_pubsub_batch,
    parse_pubsub_url,
)
from connectors.settings import read_settings

#: the parsers under their former names
parse_batch = parse_pubsub_batch
parse_url = parse_pubsub_url

__all__ = ["parse_batch", "parse_url", "settings_from_env"]


def settings_from_env(env: Mapping[str, str]) -> SalesforceSettings:
    """The Salesforce settings (the Pub/Sub API's among them) read from ``env``."""
    return read_settings(SalesforceSettings, env)
