"""The router's command-line entry points (argument handling only; logic lives elsewhere)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from extensions.config.errors import describe_error
from extensions.config.loader import load_gateway_config
from extensions.embedding.encoder import sentence_encoder
from extensions.embedding.settings import Embedding, Quantize
from extensions.router.background import NO_BACKGROUND, Background, with_background
from extensions.router.datasets import DatasetError, load_examples
from extensions.router.evaluation import evaluate, write_json
from extensions.router.examples import Example, router_examples, stratified_split
from extensions.router.finetune import FineTuneSettings, fine_tune
from extensions.router.settings import BackgroundCorpus, Calibration, NeighbourVote, Thresholds


def _with_background_for(
    embedding: Embedding, examples: Sequence[Example], background: Background
) -> list[Example]:
    """``examples`` plus the background lines the (base) encoder finds far from them."""
    if not background.texts:
        return list(examples)
    encoder = sentence_encoder(embedding)
    try:
        x = encoder.encode_sync([e.text for e in examples])
        return with_background(examples, x, encoder.encode_sync, background)[0]
    finally:
        encoder.close()


def _background(args: argparse.Namespace) -> Background:
    settings = BackgroundCorpus(enabled=not args.no_background)
    if args.background_max_similarity is not None:
        settings = settings.model_copy(update={"max_similarity": args.background_max_similarity})
    return Background.from_settings(settings)


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
    overrides = {
        k: v
        for k, v in {
            "target_false_refusal": args.target_false_refusal,
            "target_clarify_rate": args.target_clarify_rate,
            "cv_folds": args.cv_folds,
            "calibration": args.calibration,
        }.items()
        if v is not None
    }
    try:
        thresholds = Thresholds(**overrides)
    except ValidationError as exc:
        problems = "; ".join(describe_error(dict(e)) for e in exc.errors())
        print(f"gateway eval-router: {problems}", file=sys.stderr)
        return 2
    background = _background(args)
    if args.fine_tune:
        # thresholds are fitted on a share the fine-tuned encoder never sees, unless a
        # validation set is given or cross-validation is asked for (then it sees everything:
        # its out-of-fold probabilities are over-confident, the thresholds optimistic)
        hold_out = not validation and args.calibration != Calibration.CROSS_VALIDATION
        if hold_out:
            thresholds = thresholds.model_copy(update={"calibration": Calibration.HOLDOUT})
        examples = _with_background_for(embedding, train, background)
        out_dir = args.fine_tune_out or Path(tempfile.mkdtemp(prefix="gateway-finetune-"))
        print(f"fine-tuning {embedding.model} on {len(examples)} examples -> {out_dir}")
        settings = FineTuneSettings(epochs=args.epochs, margin=args.margin)
        fine_tune(
            embedding.model,
            examples,
            out_dir,
            settings,
            progress=not args.no_progress,
            hold_out_calibration=hold_out,
        )
        embedding = embedding.model_copy(update={"model": str(out_dir)})
    encoder = sentence_encoder(embedding)
    try:
        report = evaluate(
            encoder,
            train,
            evaluation,
            validation,
            thresholds,
            progress=not args.no_progress,
            background=background,
            vote=NeighbourVote(enabled=not args.no_neighbours),
        )
    finally:
        encoder.close()
    print(report.table())
    if args.json:
        write_json(report, args.json)
        print(f"wrote {args.json}")
    return 0


def finetune_router(args: argparse.Namespace) -> int:
    config = load_gateway_config(args.gateway_config)
    background = NO_BACKGROUND
    if args.router:
        if args.router not in config.routers:
            known = ", ".join(sorted(config.routers)) or "none"
            print(
                f"gateway finetune-router: no router {args.router!r} (have: {known})",
                file=sys.stderr,
            )
            return 2
        spec = config.routers[args.router]
        examples = router_examples(spec, args.gateway_config.parent)
        background = Background.from_settings(spec.out_of_scope.background)
    else:
        try:
            examples = load_examples(args.train, "train")
        except DatasetError as exc:
            print(f"gateway finetune-router: {exc}", file=sys.stderr)
            return 2
    base = args.model or config.embedding.model
    embedding = config.embedding.model_copy(update={"model": base})
    examples = _with_background_for(embedding, examples, background)
    settings = FineTuneSettings(epochs=args.epochs, margin=args.margin)
    out = fine_tune(base, examples, args.out, settings, progress=True)
    print(
        f"wrote {out}\nuse it: set embedding.model: {out} and, for the router, "
        f"thresholds.calibration: holdout in {args.gateway_config}"
    )
    return 0
