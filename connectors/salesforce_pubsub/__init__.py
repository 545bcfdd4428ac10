"""Salesforce Pub/Sub API (gRPC): the vendored proto, its generated stubs, and the
change-event subscriber. The stubs are generated at build time
(``python -m connectors.salesforce_pubsub.generate``), never committed."""
