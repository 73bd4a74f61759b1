"""Wire formats: each client protocol to and from the pipeline's neutral forms."""
