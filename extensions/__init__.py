"""Our extensions to the LiteLLM proxy: config, hooks, simulated provider, CLI.

Nothing here does work at import time; the LiteLLM proxy reaches our code
through ``extensions.proxy.entry`` (see ``config/litellm.yaml``).
"""
