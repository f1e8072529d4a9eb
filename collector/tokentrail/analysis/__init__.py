"""Waste analysis: the per-trace ledger (`ledger`, pure) and its runs over ClickHouse (`run`).

The web UI reads what this writes (tables `trace_waste`, `waste_findings`) and may import the
pure `ledger` helpers; it never imports the collector.
"""
