"""Developer tooling for the collector: generators of committed tables (not run in hospitals)."""
