"""Observability: the request log, Prometheus metrics, the dashboard and analytics."""
