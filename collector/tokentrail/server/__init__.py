"""Pieces the collector and the web UI share: settings and the ClickHouse store.

The ClickHouse schema (migrations/) is the contract between collector and web; neither imports
the other.
"""
