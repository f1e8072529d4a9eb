"""The OTLP collector: receive, decode, normalize, spool, write."""
