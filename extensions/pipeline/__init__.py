"""The request pipeline: open, start, decide, forward, finish (no LiteLLM, no ASGI)."""
