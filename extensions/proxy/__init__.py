"""The LiteLLM proxy integration: composition root, upstream over LiteLLM's router,
callback, custom auth."""
