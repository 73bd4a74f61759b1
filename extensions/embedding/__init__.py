"""The gateway's one sentence encoder, shared by the intent router and the semantic cache."""
