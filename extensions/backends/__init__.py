"""Shared infrastructure clients (Redis) used by several features."""
