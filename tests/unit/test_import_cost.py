"""What every process pays before it does anything: each `hub` command that launches a
job, each Dagster run and code server, each test worker imports the code location. An
empty findings table built with ``Schema.empty_table()`` made that import load pandas
(~0.3 s of CPU, a tenth of a `hub quarantine retry` that had nothing to do)."""

from __future__ import annotations

import subprocess
import sys

from hub.recon.findings import SCHEMA, empty


def test_loading_the_code_location_does_not_import_pandas() -> None:
    probe = "import sys, app.definitions; print('pandas' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False", "app.definitions imports pandas again"


def test_the_empty_findings_table_is_the_schema_with_no_rows() -> None:
    table = empty()
    assert table.num_rows == 0 and table.schema == SCHEMA
    assert table.equals(SCHEMA.empty_table())
