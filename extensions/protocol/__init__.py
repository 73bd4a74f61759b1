"""The OpenAI request protocol as the gateway checks it before anything is spent."""
