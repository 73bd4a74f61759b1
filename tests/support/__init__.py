"""Test support: real processes (Redis, simulated provider, LiteLLM proxy) on free ports."""
