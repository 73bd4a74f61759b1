"""LiteLLM hooks: thin ``CustomLogger`` adapters around pure functions."""
