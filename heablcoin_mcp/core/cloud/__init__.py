"""The API manager (LLM endpoints with routing, failover, circuit breaking and rate limits)."""
