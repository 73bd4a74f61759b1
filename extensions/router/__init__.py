"""The intent router: classify a request, then route, respond, hand off, clarify or refuse."""
