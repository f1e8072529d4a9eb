"""The Tokentrail web UI."""
