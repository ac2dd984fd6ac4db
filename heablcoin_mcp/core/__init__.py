"""The domain. Plain Python: nothing here imports `mcp`."""
