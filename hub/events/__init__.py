"""Change events: CloudEvents parsing, SAP business event mapping, the durable inbox and
the SAP webhook receiver (domain code: no Dagster, no CLI)."""
