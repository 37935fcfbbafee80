"""A large export streams with flat memory: serve's RSS measured while it sends 100,000
readings as CSV (benchmarks/export_memory.py does the same with a million)."""

from __future__ import annotations

import sys
from pathlib import Path

from support.mosquitto import MosquittoBroker
from support.serve import serve_for

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from export_memory import fill, measure

#: Most serve's RSS may grow while it streams the export: measured ~6 MiB (a page of
#: samples, the database's page cache, the allocator). Reading it as one page instead
#: (PAGE_SIZE of 10**7, the rest still streamed) measured 18 MiB.
RSS_GROWTH_BOUND_MIB = 12


def test_a_100k_reading_export_streams_with_flat_memory(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """100,000 readings come out as CSV, every one, while serve's memory grows by less
    than the bound."""
    database = tmp_path / "export.db"
    stored = fill(f"sqlite:///{database}", readings=100_000, devices=50)
    with serve_for(
        mosquitto.port, tmp_path / "serve", MQTTHUB_DATABASE_URL=f"sqlite:///{database}"
    ) as serve:
        assert serve.process is not None
        result = measure(pid=serve.process.pid, base_url=serve.base_url)
    assert result["readings"] == stored
    assert result["rss_samples"] > 3
    assert result["rss_growth_mib"] < RSS_GROWTH_BOUND_MIB, result
