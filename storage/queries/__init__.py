"""Aggregate queries of the results store: SQL, run in DuckDB (no loops over rows in Python)."""
