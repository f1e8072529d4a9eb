"""`tokentrail demo`: a realistic agent workload against a local stand-in for the model APIs."""
