"""Provider prompt caching: which model groups cache long prompt prefixes, how the gateway
asks for it, and what cached input saves and costs (storage)."""
