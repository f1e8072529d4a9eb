"""The Tokentrail instrumentation SDK."""
