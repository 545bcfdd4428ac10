"""``hub metrics`` in a real subprocess against a SQLite store: ``--json`` prints exactly
one JSON object on stdout, ``--plot`` writes PNGs, the table view names the figures, a
missing rate fails with the currency named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import Engine

from tests.analytics.golden import write_golden
from tests.analytics.scenarios import AS_OF, hand_book


def _hub(args: list[str], url: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HUB_DATABASE_URL": url, "HUB_DATA_DIR": str(tmp / "data")}
    env.pop("HUB_REPORTING_CURRENCY", None)
    return subprocess.run(
        [sys.executable, "-m", "app.cli.main", "metrics", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_json_plot_and_table(store: tuple[str, Engine], tmp_path: Path) -> None:
    url, engine = store
    for entity, records in hand_book().items():
        write_golden(engine, entity, records)
    done = _hub(
        ["--as-of", AS_OF.isoformat(), "--months", "6", "--json", "--plot", str(tmp_path / "p")],
        url,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)  # stdout is the JSON object and nothing else
    assert doc["summary"]["mrr_rep"] == 87247 and doc["reporting_currency"] == "USD"
    assert [m["month"] for m in doc["movements"]][-1] == "2025-06-01"
    assert "customer_mrr" not in doc
    for name in ("waterfall.png", "cohorts.png"):
        assert (tmp_path / "p" / name).read_bytes()[:4] == b"\x89PNG"
    table = _hub(
        ["--as-of", AS_OF.isoformat(), "--months", "6", "--currency", "EUR"], url, tmp_path
    )
    assert table.returncode == 0, table.stderr
    # 75668 + J 5000 USD x 0.92 = 4600 -> 80268 EUR minor units
    assert "MRR 802.68 EUR" in table.stdout and "2025-03" in table.stdout
    assert "EUR at constant currency" in table.stdout.splitlines()[0]
    # E's written-off January invoice: 50.00 USD, no tax -> 46.00 EUR either way
    assert "lost to failed payments 46.00 EUR with tax" in table.stdout
    assert "revenue written off net of tax 46.00 EUR" in table.stdout


def test_missing_rate_is_named(store: tuple[str, Engine], tmp_path: Path) -> None:
    url, engine = store
    write_golden(engine, "customer", hand_book()["customer"])
    write_golden(engine, "subscription", hand_book()["subscription"])
    rates = tmp_path / "rates.yaml"
    rates.write_text('rates:\n  USD: "1"\n')
    done = _hub(["--as-of", AS_OF.isoformat(), "--rates", str(rates), "--json"], url, tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert "EUR" in done.stderr and "GBP" in done.stderr
