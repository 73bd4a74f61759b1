"""Authenticate, authorise and admit; and, when a request ends, release and charge.

Access control fails closed: a request without a verified key is refused (401), a
key asking for an endpoint or model it was not granted is refused (403), and a limit
store that cannot be reached refuses with 503 unless ``on_redis_failure: open``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from extensions.access.budgets import Budgets, BudgetStoreUnavailable, BudgetVerdict
from extensions.access.grants import DENY_ALL, UNLIMITED, Grant
from extensions.access.keys import KeyVerifier, Principal, Role, bearer_key
from extensions.access.limits import Limiter, Verdict
from extensions.access.settings import DegradeStep
from extensions.access.usage import Charge, Usage
from extensions.pipeline.context import Admission, Protocol
from extensions.pipeline.errors import (
    BudgetExceeded,
    Forbidden,
    GatewayError,
    RateLimited,
    Unauthenticated,
    Unavailable,
)

LIMIT_NAMES = {
    "rpm": "requests per minute",
    "tpm": "tokens per minute",
    "max_parallel": "parallel requests",
}
NO_KEY = "No API key provided. Send it as 'Authorization: Bearer <key>'."


def presented_key(headers: Mapping[str, str], x_api_key: bool) -> str | None:
    """The key a request presents: ``Authorization: Bearer <key>``, or ``x-api-key`` where
    the protocol uses it (Anthropic's). Raises 401 for a malformed Authorization header."""
    authorization = headers.get("authorization")
    if authorization is not None:
        key = bearer_key(authorization)
        if key is None:
            raise Unauthenticated(
                "Malformed Authorization header: send 'Authorization: Bearer <key>'.",
                param="api_key",
            )
        return key
    return headers.get("x-api-key") if x_api_key else None


def authenticate(verifier: KeyVerifier, headers: Mapping[str, str], x_api_key: bool) -> Principal:
    key = presented_key(headers, x_api_key)
    if not key:
        raise Unauthenticated(NO_KEY, param="api_key")
    principal = verifier.verify(key)
    if principal is None:
        raise Unauthenticated("Invalid API key.", param="api_key")
    return principal


def _limited(verdict: Verdict) -> GatewayError:
    retry = {"retry-after": str(verdict.retry_after_s)}
    if verdict.limit == "unavailable":
        return Unavailable(
            "Usage limits cannot be checked right now (limit store unavailable); "
            f"retry in {verdict.retry_after_s} s.",
            headers=retry,
        )
    what = LIMIT_NAMES.get(verdict.limit or "", verdict.limit)
    return RateLimited(
        f"Rate limit reached for {verdict.subject}: {what}. Retry after {verdict.retry_after_s} s.",
        headers=retry,
    )


def _over_budget(v: BudgetVerdict, now: float) -> GatewayError:
    assert v.resets_at is not None
    wait = max(1, int(v.resets_at.timestamp() - now))
    return BudgetExceeded(
        f"The {v.period} budget of {v.subject} (${v.budget_usd:.2f}) is used up "
        f"(${v.spent_usd:.4f} spent); it resets at {v.resets_at:%Y-%m-%dT%H:%M:%SZ}.",
        headers={"retry-after": str(wait)},
    )


@dataclass(frozen=True)
class Gatekeeper:
    """Grants, limits, budgets and usage of one generation of gateway.yaml."""

    grants: Mapping[str, Grant]
    limiter: Limiter | None
    budgets: Budgets | None
    usage: Usage
    ladders: Mapping[str, tuple[DegradeStep, ...]] = field(default_factory=dict)

    def grant(self, principal: Principal) -> Grant:
        if principal.role is Role.OPERATOR:
            return UNLIMITED
        return self.grants.get(principal.alias, DENY_ALL)

    def authorise(self, principal: Principal, protocol: Protocol, model: str) -> Grant:
        """403 naming what the key may use (before anything else happens: fail-closed)."""
        grant = self.grant(principal)
        if not grant.speaks(protocol.value):
            allowed = ", ".join(sorted(grant.endpoints or ())) or "none"
            raise Forbidden(
                f"This key ({principal.alias}) may not use the {protocol.value} "
                f"endpoint. Allowed: {allowed}."
            )
        if not grant.allows(model):
            allowed = ", ".join(grant.models or ()) or "nothing"
            raise Forbidden(
                f"This key ({principal.alias}) may not use model '{model}'. Allowed: {allowed}.",
                param="model",
            )
        return grant

    async def admit(self, principal: Principal, request_id: str) -> Admission:
        """Budgets, then limits (counting the request if it passes); raises when refused."""
        admission = Admission(principal.alias, principal.team, limited=False)
        if principal.role is Role.OPERATOR:
            return admission
        if self.budgets is not None:
            try:
                budget = await self.budgets.check(principal.alias)
            except BudgetStoreUnavailable:
                raise _limited(Verdict(False, None, "unavailable", 5)) from None
            if not budget.allowed:
                raise _over_budget(budget, time.time())
            admission.budget_spent = budget.spent_share
            admission.ladder = self.ladders.get(principal.alias, ())
        if self.limiter is not None and self.limiter.limits_of(principal.alias):
            verdict = await self.limiter.admit(principal.alias, request_id)
            if not verdict.allowed:
                raise _limited(verdict)
            admission.limited = True
        return admission

    async def release(self, admission: Admission, request_id: str) -> None:
        if admission.limited and self.limiter is not None:
            await self.limiter.release(admission.alias, request_id)

    async def charge(self, admission: Admission | None, charge: Charge) -> None:
        """Tokens into the tpm window, spend into budgets, everything into usage."""
        if admission is not None and self.limiter is not None:
            await self.limiter.charge_tokens(charge.alias, charge.tokens)
        if admission is not None and self.budgets is not None:
            await self.budgets.charge(charge.alias, charge.spend_usd)
        await self.usage.record(charge)
