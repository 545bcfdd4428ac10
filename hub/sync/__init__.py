"""The sync engine: extract -> map -> validate -> merge by ownership -> plan pushes ->
push -> bookkeeping, per entity (see ARCHITECTURE.md)."""
