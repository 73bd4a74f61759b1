"""PII guardrail: detect, redact or block personal data and secrets in message text.

``detectors.scan`` finds spans, ``policy.apply`` turns them into a verdict for a
route, ``records`` makes a JSON record (a handoff) safe to send out of the process.
"""
