"""Access control: who may call the gateway (fail-closed: when in doubt, refuse)."""
