"""`hub sandbox ...` commands (start/stop the emulated landscape, switch faults)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Run the emulated landscape (Salesforce, SAP, PIM, WMS, billing).")
