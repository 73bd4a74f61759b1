"""The router's command-line entry points (argument handling only; logic lives elsewhere)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from extensions.config.loader import load_gateway_config
from extensions.embedding.encoder import sentence_encoder
from extensions.embedding.settings import Quantize
from extensions.router.datasets import DatasetError, load_examples
from extensions.router.evaluation import evaluate, write_json
from extensions.router.finetune import FineTuneSettings, fine_tune
from extensions.router.settings import Thresholds
from extensions.router.training import router_examples, stratified_split


def eval_router(args: argparse.Namespace) -> int:
    try:
        train = load_examples(args.train, "train")
        validation = load_examples(args.val, "eval") if args.val else []
        if args.eval:
            evaluation = load_examples(args.eval, "eval")
        else:
            train, evaluation = stratified_split(train, args.eval_split, seed=42)
    except DatasetError as exc:
        print(f"gateway eval-router: {exc}", file=sys.stderr)
        return 2
    embedding = load_gateway_config(args.gateway_config).embedding
    if args.model:
        embedding = embedding.model_copy(update={"model": args.model})
    if args.quantize:
        embedding = embedding.model_copy(update={"quantize": Quantize(args.quantize)})
    if args.fine_tune:
        out_dir = args.fine_tune_out or Path(tempfile.mkdtemp(prefix="gateway-finetune-"))
        print(f"fine-tuning {embedding.model} on {len(train)} examples -> {out_dir}")
        fine_tune(embedding.model, train, out_dir, FineTuneSettings(), progress=True,
                  hold_out_calibration=not validation)  # fmt: skip
        embedding = embedding.model_copy(update={"model": str(out_dir)})
    overrides = {k: v for k, v in {
        "target_false_refusal": args.target_false_refusal,
        "target_clarify_rate": args.target_clarify_rate,
    }.items() if v is not None}  # fmt: skip
    thresholds = Thresholds(**overrides)
    encoder = sentence_encoder(embedding)
    try:
        report = evaluate(encoder, train, evaluation, validation, thresholds,
                          progress=not args.no_progress)  # fmt: skip
    finally:
        encoder.close()
    print(report.table())
    if args.json:
        write_json(report, args.json)
        print(f"wrote {args.json}")
    return 0


def finetune_router(args: argparse.Namespace) -> int:
    config = load_gateway_config(args.gateway_config)
    if args.router:
        if args.router not in config.routers:
            known = ", ".join(sorted(config.routers)) or "none"
            print(f"gateway finetune-router: no router {args.router!r} (have: {known})",
                  file=sys.stderr)  # fmt: skip
            return 2
        examples = router_examples(config.routers[args.router], args.gateway_config.parent)
    else:
        try:
            examples = load_examples(args.train, "train")
        except DatasetError as exc:
            print(f"gateway finetune-router: {exc}", file=sys.stderr)
            return 2
    base = args.model or config.embedding.model
    out = fine_tune(base, examples, args.out, FineTuneSettings(epochs=args.epochs), progress=True)
    print(f"wrote {out}\nuse it: set embedding.model: {out} in {args.gateway_config}")
    return 0
