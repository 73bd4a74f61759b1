"""Exact and semantic response caches: keys, stores, vector indexes, policy, service."""
