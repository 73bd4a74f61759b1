"""Simulated model provider: a small FastAPI app speaking the OpenAI (chat, responses,
embeddings), Anthropic and Gemini (generateContent, cachedContents) wire formats, so
LiteLLM's real provider code can talk to it over HTTP.

Used by the demo, the integration tests and the load tests. Behaviour (latency, faults,
answer length, per-provider prompt caching) comes from ``config/simprovider.yaml`` and can
be changed at runtime through the ``/_sim/...`` admin API (docs/simulator.md). Entry
points: ``app.create_app`` and ``server.main`` (``python -m extensions.simprovider``).
"""
