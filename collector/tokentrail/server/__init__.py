"""Pieces the collector and the web UI share: settings and the process runner (the store is
`tokentrail.store`). The ClickHouse schema (migrations/) is the contract between collector and
web; neither imports the other.
"""
