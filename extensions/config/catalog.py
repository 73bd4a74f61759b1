"""What ``config/litellm.yaml`` defines, as the gateway needs it: model groups (and what
they serve), deployments, prices and the configured fallback chains."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from extensions.config.errors import ConfigError
from extensions.config.loader import read_yaml_mapping

CHAT = "chat"
EMBEDDING = "embedding"


@dataclass(frozen=True, slots=True)
class Price:
    """USD per token, from a deployment's ``model_info``."""

    input: float = 0.0
    output: float = 0.0
    cache_read: float | None = None  # input read from the provider's prompt cache
    cache_write: float | None = None  # input written to it

    def cost(self, prompt: int, completion: int, cached: int = 0, written: int = 0) -> float:
        """USD for one call; ``prompt`` counts every input token, cached and written ones too
        (as LiteLLM reports it for every provider)."""
        plain = max(0, prompt - cached - written)
        read_price = self.input if self.cache_read is None else self.cache_read
        write_price = self.input if self.cache_write is None else self.cache_write
        return (
            plain * self.input
            + cached * read_price
            + written * write_price
            + completion * self.output
        )


@dataclass(frozen=True, slots=True)
class Deployment:
    id: str
    group: str
    provider: str  # the prefix of litellm_params.model: openai, anthropic, gemini, …
    price: Price | None


@dataclass(frozen=True)
class Catalog:
    modes: Mapping[str, str]  # model group -> chat | embedding
    deployments: Mapping[str, Deployment] = field(default_factory=dict)  # by model_info.id
    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def groups(self) -> frozenset[str]:
        return frozenset(self.modes)

    def price_of_group(self, group: str) -> Price | None:
        """The first priced deployment of a group (for estimates such as savings)."""
        return next(
            (
                d.price
                for d in self.deployments.values()
                if d.group == group and d.price is not None
            ),
            None,
        )

    def provider_of_group(self, group: str) -> str | None:
        return next((d.provider for d in self.deployments.values() if d.group == group), None)

    def allowed_fallbacks(self, allows: Callable[[str], bool]) -> dict[str, tuple[str, ...]]:
        """The fallback chains with every group a key may not use taken out."""
        return {
            group: tuple(t for t in targets if allows(t))
            for group, targets in self.fallbacks.items()
            if allows(group)
        }

    @classmethod
    def from_litellm_yaml(cls, path: Path) -> Catalog:
        data = read_yaml_mapping(path)
        entries = data.get("model_list") or []
        if not isinstance(entries, list):
            raise ConfigError(path, ["model_list: expected a list of deployments"])
        modes: dict[str, str] = {}
        deployments: dict[str, Deployment] = {}
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or "model_name" not in entry:
                continue
            group = str(entry["model_name"])
            info = _mapping(entry.get("model_info"))
            params = _mapping(entry.get("litellm_params"))
            mode = EMBEDDING if info.get("mode") == "embedding" else CHAT
            modes.setdefault(group, mode)
            deployment_id = str(info.get("id") or f"{group}#{i}")
            deployments[deployment_id] = Deployment(
                deployment_id,
                group,
                str(params.get("model") or "").partition("/")[0] or "openai",
                _price(info),
            )
        return cls(modes, deployments, _fallbacks(data.get("router_settings")))


def _mapping(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _price(info: Mapping[str, object]) -> Price | None:
    if "input_cost_per_token" not in info:
        return None

    def number(name: str) -> float | None:
        value = info.get(name)
        return float(value) if isinstance(value, int | float | str) and value != "" else None

    return Price(
        number("input_cost_per_token") or 0.0,
        number("output_cost_per_token") or 0.0,
        number("cache_read_input_token_cost"),
        number("cache_creation_input_token_cost"),
    )


def _fallbacks(settings: object) -> dict[str, tuple[str, ...]]:
    raw = settings.get("fallbacks") if isinstance(settings, dict) else None
    out: dict[str, tuple[str, ...]] = {}
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict):
            for group, targets in item.items():
                if isinstance(targets, list):
                    out[str(group)] = tuple(str(t) for t in targets)
    return out
