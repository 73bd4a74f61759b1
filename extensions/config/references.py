"""Pure: checks that cross sections or files (model groups of litellm.yaml, sink names)."""

from __future__ import annotations

from collections.abc import Set

from extensions.access.grants import model_problems
from extensions.access.settings import Limits, ladder_problems
from extensions.config.schema import GatewayConfig


def reference_problems(config: GatewayConfig, model_groups: Set[str]) -> list[str]:
    """Every dangling reference, as ``yaml.path: problem`` lines."""
    problems: list[str] = []
    known = ", ".join(sorted(model_groups))
    sinks = ", ".join(sorted(config.handoff_sinks)) or "none"
    for name, router in config.routers.items():
        where = f"routers.{name}"
        if name in model_groups:
            problems.append(f"{where}: the name is already a model group in litellm.yaml")
        targets = [("default.model", router.default.model)]
        targets += [(f"intents[{i}].route.model", it.route.model)
                    for i, it in enumerate(router.intents) if it.route is not None]  # fmt: skip
        if router.llm_classifier.enabled:
            targets.append(("llm_classifier.model", router.llm_classifier.model))
        targets += [(f"degrade[{i}].model", step.model)
                    for i, step in enumerate(router.degrade) if step.model is not None]  # fmt: skip
        problems += ladder_problems(where, router.degrade)
        for path, model in targets:
            if model not in model_groups:
                problems.append(
                    f"{where}.{path}: unknown model group '{model}' (litellm.yaml has: {known})"
                )
        for i, it in enumerate(router.intents):
            if it.handoff is not None and it.handoff.sink not in config.handoff_sinks:
                problems.append(f"{where}.intents[{i}].handoff.sink: unknown sink "
                                f"'{it.handoff.sink}' (handoff_sinks has: {sinks})")  # fmt: skip
    targets_for_keys = set(model_groups) | set(config.routers)
    subjects: list[tuple[str, Limits]] = [
        (f"access.teams.{n}", t) for n, t in config.access.teams.items()
    ]
    subjects += [(f"access.keys[{i}]", k) for i, k in enumerate(config.access.keys)]
    for where, limits in subjects:
        problems += model_problems(where, limits.models, targets_for_keys)
        problems += ladder_problems(where, limits.degrade)
        for i, step in enumerate(limits.degrade):
            if step.model is not None and step.model not in model_groups:
                problems.append(f"{where}.degrade[{i}].model: unknown model group "
                                f"'{step.model}' (litellm.yaml has: {known})")  # fmt: skip
    for group in config.prompt_caching.groups:
        if group not in model_groups:
            problems.append(f"prompt_caching.groups.{group}: unknown model group (litellm.yaml "
                            f"has: {known})")  # fmt: skip
    routes = config.observability.request_log.content.routes
    for i, route in enumerate(routes):
        if route not in targets_for_keys:
            problems.append(f"observability.request_log.content.routes[{i}]: unknown route "
                            f"'{route}' (routers and model groups: "
                            f"{', '.join(sorted(targets_for_keys))})")  # fmt: skip
    return problems
