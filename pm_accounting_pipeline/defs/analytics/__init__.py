"""Analytics layer: the DuckDB views analysts query, checked after each ledger update."""
