"""Loading and validating ``config/gateway.yaml``: ``schema`` (one pydantic model per
section), ``loader`` (YAML to validated models), ``errors`` (messages naming the file,
YAML path and allowed values), ``references`` (checks across sections and files)."""
