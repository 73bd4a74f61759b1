"""Building one generation of the gateway from its YAML, and swapping generations on reload."""
