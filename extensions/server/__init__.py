"""The gateway's HTTP front (ASGI): routes, the body limit, and one exchange per request."""
