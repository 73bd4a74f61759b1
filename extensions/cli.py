"""The ``gateway`` command: start the gateway, the simulated provider, check configs.

Later features add their own sub-commands here (evaluation, calibration, keys, reports).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from extensions.config.errors import ConfigError
from extensions.embedding.folder import ModelFolderError
from extensions.embedding.training_deps import MissingTrainingDeps, require_training_deps
from extensions.launcher import (
    DEFAULT_GATEWAY_CONFIG,
    DEFAULT_LITELLM_CONFIG,
    DEFAULT_SIM_CONFIG,
    ProxyLaunch,
    Server,
    check_configs,
    run_demo,
    warn_per_worker_state,
)


def _add_proxy_args(p: argparse.ArgumentParser, port: int) -> None:
    p.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_LITELLM_CONFIG,
        help="LiteLLM proxy config (models, router settings)",
    )
    p.add_argument(
        "--gateway-config", type=Path, default=DEFAULT_GATEWAY_CONFIG, help="our extensions' config"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=port)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--server", type=Server, choices=list(Server), default=Server.UVICORN)
    p.add_argument("--log-level", default="ERROR", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _launch(args: argparse.Namespace, sim_url: str | None) -> ProxyLaunch:
    return ProxyLaunch(
        litellm_config=args.config,
        gateway_config=args.gateway_config,
        host=args.host,
        port=args.port,
        workers=args.workers,
        server=args.server,
        log_level=args.log_level,
        sim_url=sim_url,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="simulated provider + gateway on port 4000, no keys needed")
    _add_proxy_args(demo, 4000)
    demo.add_argument("--sim-config", type=Path, default=DEFAULT_SIM_CONFIG)
    demo.add_argument("--sim-port", type=int, default=8010)

    proxy = sub.add_parser("proxy", help="run the LiteLLM proxy with our extensions")
    _add_proxy_args(proxy, 4000)
    proxy.add_argument(
        "--sim-url", default=None, help="point the simulated deployments at this provider URL"
    )

    sim = sub.add_parser("sim-provider", help="run the simulated model provider")
    sim.add_argument("--config", type=Path, default=DEFAULT_SIM_CONFIG)
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8010)
    sim.add_argument("--log-level", default="warning")

    ev = sub.add_parser("eval-router", help="build a router from labelled data and measure it")
    ev.add_argument("--train", required=True, help="CSV (text,label) or JSON[:split+split]")
    ev.add_argument("--val", help="fit thresholds here (default: a split of --train)")
    ev.add_argument("--eval", help="evaluate here (default: --eval-split of --train)")
    ev.add_argument(
        "--eval-split",
        type=float,
        default=0.15,
        help="share of --train held out for evaluation when --eval is not given",
    )
    ev.add_argument("--fine-tune", action="store_true", help="fine-tune the encoder first")
    ev.add_argument("--fine-tune-out", type=Path, help="keep the fine-tuned encoder here")
    ev.add_argument("--quantize", choices=["none", "int8"], help="override embedding.quantize")
    ev.add_argument("--model", help="encoder (default: gateway.yaml's embedding.model)")
    ev.add_argument("--gateway-config", type=Path, default=DEFAULT_GATEWAY_CONFIG)
    ev.add_argument("--target-false-refusal", type=float, default=None)
    ev.add_argument("--target-clarify-rate", type=float, default=None)
    ev.add_argument("--cv-folds", type=int, help="folds of the threshold-fitting cross-validation")
    ev.add_argument(
        "--calibration",
        choices=["cross_validation", "holdout"],
        help="what thresholds are fitted on (default: cross_validation; holdout with --fine-tune)",
    )
    ev.add_argument(
        "--no-background",
        action="store_true",
        help="leave out the shipped background corpus of off-topic requests",
    )
    ev.add_argument(
        "--background-max-similarity",
        type=float,
        help="drop background lines closer than this to an in-scope example",
    )
    ev.add_argument(
        "--no-neighbours",
        action="store_true",
        help="the head alone: no nearest-neighbour vote and no similarity floor",
    )
    ev.add_argument("--epochs", type=float, default=3.0, help="--fine-tune: epochs")
    ev.add_argument("--margin", type=float, default=0.0, help="--fine-tune: cosine margin")
    ev.add_argument("--json", type=Path, help="write the report here")
    ev.add_argument("--no-progress", action="store_true")

    ft = sub.add_parser("finetune-router", help="fine-tune the encoder on a router's examples")
    source = ft.add_mutually_exclusive_group(required=True)
    source.add_argument("--router", help="a router of gateway.yaml (its intents' examples)")
    source.add_argument("--train", help="CSV (text,label) or JSON[:split+split]")
    ft.add_argument("--out", type=Path, required=True, help="folder to write the model to")
    ft.add_argument("--model", help="base encoder (default: gateway.yaml's embedding.model)")
    ft.add_argument("--epochs", type=float, default=3.0)
    ft.add_argument("--margin", type=float, default=0.0, help="cosine margin (CosFace)")
    ft.add_argument("--gateway-config", type=Path, default=DEFAULT_GATEWAY_CONFIG)

    cal = sub.add_parser("calibrate-cache", help="measure the semantic cache on labelled pairs")
    cal.add_argument("--pairs", type=Path, required=True, help="TSV/CSV: text_a, text_b, label")
    cal.add_argument("--target-precision", type=float, help="sweep thresholds, recommend one")
    cal.add_argument("--threshold", type=float, help="evaluate this threshold only "
                     "(default: cache.semantic.threshold of gateway.yaml)")  # fmt: skip
    cal.add_argument("--json", type=Path, help="write the report here")
    cal.add_argument("--limit", type=int, help="only the first N pairs")
    cal.add_argument("--model", help="encoder (default: gateway.yaml's embedding.model)")
    cal.add_argument("--gateway-config", type=Path, default=DEFAULT_GATEWAY_CONFIG)
    cal.add_argument(
        "--verifier",
        choices=["rules", "learned", "cross-encoder"],
        help="default: cache.semantic.verifier.kind of gateway.yaml",
    )
    cal.add_argument(
        "--verifier-model",
        help="learned: a builtin name or a .npz path; cross-encoder: its folder "
        "(one trained with --hold-out is measured on its held-out fold only)",
    )
    cal.add_argument(
        "--min-score",
        type=float,
        help="learned, cross-encoder: the minimum P(same question) (default: gateway.yaml's)",
    )
    cal.add_argument(
        "--sweep",
        choices=["threshold", "score"],
        help="what --target-precision sweeps (default: score for a model)",
    )
    cal.add_argument(
        "--folds",
        type=int,
        default=0,
        help="K question-disjoint folds: train the verifier on K-1, measure on the held-out "
        "one (a cross-encoder takes about 15 min per fold of 32k pairs on 2 cores)",
    )
    cal.add_argument(
        "--no-embeddings", action="store_true", help="with --folds: train on lexical features only"
    )
    cal.add_argument("--bootstrap", type=int, default=1000, help="resamples for the 95%% CIs")
    cal.add_argument("--seed", type=int, default=0)
    cal.add_argument(
        "--by-intent",
        action="store_true",
        help="per-router/intent thresholds (pairs with router[, intent] columns)",
    )
    cal.add_argument("--min-pairs", type=int, default=20, help="--by-intent: fewest pairs")
    cal.add_argument("--yaml-out", type=Path, help="--by-intent: write the YAML snippet here")
    cal.add_argument(
        "--answer-agreement",
        type=float,
        default=0.9,
        help="shadow files: answer similarity that labels an unreviewed pair same",
    )

    tv = sub.add_parser(
        "train-cache-verifier", help="train the semantic cache's learned verifier on labelled pairs"
    )
    tv.add_argument("--pairs", type=Path, required=True, help="TSV/CSV/YAML: text_a, text_b, label")
    tv.add_argument(
        "--out", type=Path, required=True, help="the .npz (learned) or folder (cross-encoder)"
    )
    tv.add_argument("--data-licence", required=True, help="the training data's licence, recorded")
    tv.add_argument("--kind", choices=["learned", "cross-encoder"], default="learned")
    tv.add_argument(
        "--hold-out",
        metavar="K/N",
        help="train on all but question-disjoint fold K of N (0-based), recorded in the card: "
        "calibrate-cache then measures on fold K alone",
    )
    tv.add_argument("--no-embeddings", action="store_true", help="learned: lexical features only")
    tv.add_argument("--hidden", type=int, default=128, help="learned: hidden units")
    tv.add_argument(
        "--epochs", type=float, default=1.0, help="cross-encoder: passes over the pairs"
    )
    tv.add_argument(
        "--base-model", help="cross-encoder: BERT folder to start from (default: the encoder's)"
    )
    tv.add_argument("--seed", type=int, default=0)
    tv.add_argument("--gateway-config", type=Path, default=DEFAULT_GATEWAY_CONFIG)

    nk = sub.add_parser("new-key", help="make a gateway key and print its gateway.yaml entry")
    nk.add_argument("--alias", required=True)
    nk.add_argument("--owner", required=True, help="who the key belongs to")
    nk.add_argument("--team", help="a team of access.teams")
    nk.add_argument("--models", nargs="+", help="allowed model groups / routers ('*' ok)")

    us = sub.add_parser("usage", help="usage per key, team and model (asks a running gateway)")
    us.add_argument("--url", default="http://127.0.0.1:4000")
    us.add_argument("--key", help="the master key (default: LITELLM_MASTER_KEY)")
    us.add_argument("--day", help="YYYY-MM-DD (UTC; default: today)")
    us.add_argument("--json", action="store_true", help="print the JSON report")

    rep = sub.add_parser("report", help="analytics from request logs (files, folders, globs)")
    rep.add_argument("--logs", nargs="+", required=True, metavar="PATH",
                     help="request-log files, folders of requests-*.jsonl[.N], globs")  # fmt: skip
    rep.add_argument("--since", help="only the last 30m, 1h, 2d, ... (before now)")
    rep.add_argument("--start", help="ISO time, inclusive (UTC unless an offset is given)")
    rep.add_argument("--end", help="ISO time, exclusive")
    rep.add_argument("--out", type=Path, default=Path("reports/analytics"),
                     help="folder for analytics.md and analytics.json")  # fmt: skip
    rep.add_argument("--top", type=int, default=10, help="intents shown in the cost table")

    pii = sub.add_parser("eval-pii", help="precision / recall and latency of the PII guardrail")
    pii.add_argument("--data", type=Path, help="labelled JSONL (default: the shipped test split)")
    pii.add_argument("--json", type=Path, help="write the report here")
    pii.add_argument("--requests", type=int, default=3000, help="chat requests to time")

    check = sub.add_parser("check-config", help="validate config/gateway.yaml and exit")
    check.add_argument("--gateway-config", type=Path, default=DEFAULT_GATEWAY_CONFIG)
    check.add_argument("--config", type=Path, default=DEFAULT_LITELLM_CONFIG)
    return parser


def _training_command(args: argparse.Namespace) -> str | None:
    """The command, if it fine-tunes (torch and sentence-transformers, not in the serving
    install)."""
    if args.command == "finetune-router":
        return "finetune-router"
    if args.command == "eval-router" and args.fine_tune:
        return "eval-router --fine-tune"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        needs_torch = _training_command(args)
        if needs_torch:
            require_training_deps(needs_torch)
        if args.command == "check-config":
            check_configs(
                ProxyLaunch(gateway_config=args.gateway_config, litellm_config=args.config)
            )
            print(f"{args.gateway_config}: OK")
            return 0
        if args.command == "eval-router":
            from extensions.router.commands import eval_router

            return eval_router(args)
        if args.command == "usage":
            from extensions.access.commands import usage_command

            return usage_command(args)
        if args.command == "new-key":
            from extensions.access.commands import new_key_command

            return new_key_command(args)
        if args.command == "report":
            from extensions.observe.report import report_command

            return report_command(args)
        if args.command == "calibrate-cache":
            from extensions.cache.commands import calibrate_cache

            return calibrate_cache(args)
        if args.command == "eval-pii":
            from extensions.guard.commands import eval_pii

            return eval_pii(args)
        if args.command == "train-cache-verifier":
            from extensions.cache.commands import train_cache_verifier

            return train_cache_verifier(args)
        if args.command == "finetune-router":
            from extensions.router.commands import finetune_router

            return finetune_router(args)
        if args.command == "sim-provider":
            from extensions.simprovider.server import main as sim_main

            return sim_main([
                "--config", str(args.config), "--host", args.host,
                "--port", str(args.port), "--log-level", args.log_level,
            ])  # fmt: skip
        if args.command == "demo":
            return run_demo(_launch(args, None), args.sim_config, args.sim_port)
        launch = _launch(args, args.sim_url)
        warn_per_worker_state(launch, check_configs(launch))
        cmd = launch.command()
        os.execve(cmd[0], cmd, launch.environment(os.environ))
    except (ConfigError, ModelFolderError, MissingTrainingDeps) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    return 0  # pragma: no cover - execve does not return


if __name__ == "__main__":
    sys.exit(main())
