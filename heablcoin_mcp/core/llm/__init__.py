"""The API manager: LLM endpoints, provider clients, endpoint health and rate budgets."""
