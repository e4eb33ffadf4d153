"""The read scenarios, in a process of their own on an archive opened again (python -m
bench.reads URL IDS_FILE).

A reader is usually another process than the import that wrote the archive: this one
holds none of the benchmark's records (1M records in the writer's heap slowed DuckDB's
point reads by a third, measured) and opens the archive as ``polylogue`` read commands do
(read-only for SQLite and DuckDB, whose in-process state after a 1M write made
``list_conversations`` twice as slow as on the same file reopened). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench import references
from bench.measure import latencies_ms, median_seconds, percentile
from polylogue.storage.backends import create_backend


def read_scenarios(backend_name: str, url: str, ids: dict[str, list[str]]) -> dict[str, Any]:
    """p50/p99 in ms of ``get_messages`` (and the raw driver on the same SQL),
    ``list_conversations(limit=50)``, ``get_attachments``; ``stats()`` in ms."""
    read_only = backend_name in ("sqlite", "duckdb")
    backend = create_backend(url, read_only=read_only, migrate=False)
    try:
        sample = ids["sample"]
        get = latencies_ms([lambda cid=cid: backend.get_messages(cid) for cid in sample])
        result: dict[str, Any] = {
            "get_messages_p50": percentile(get, 50),
            "get_messages_p99": percentile(get, 99),
        }
        raw_fetch = references.get_messages_function(backend_name, backend)
        if raw_fetch is not None:
            raw = latencies_ms([lambda cid=cid: raw_fetch(cid) for cid in sample])
            result["raw_get_messages_p50"] = percentile(raw, 50)
        listing = latencies_ms([lambda: backend.list_conversations(limit=50) for _ in sample])
        result["list_conversations_p50"] = percentile(listing, 50)
        result["list_conversations_p99"] = percentile(listing, 99)
        att = latencies_ms(
            [lambda cid=cid: backend.get_attachments(cid) for cid in ids["with_attachments"]]
        )
        result["get_attachments_p50"] = percentile(att, 50)
        result["stats_ms"] = median_seconds(backend.stats) * 1000
        return result
    finally:
        backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.reads")
    parser.add_argument("backend")
    parser.add_argument("url")
    parser.add_argument("ids", type=Path, help='JSON: {"sample": [...], "with_attachments": [...]}')
    args = parser.parse_args()
    ids = json.loads(args.ids.read_text())
    print(json.dumps(read_scenarios(args.backend, args.url, ids)))


if __name__ == "__main__":
    main()
