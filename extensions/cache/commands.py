"""``gateway calibrate-cache`` and ``gateway train-cache-verifier``: argument handling.

The measuring is in ``calibrate`` (and ``per_intent``), the training in
``train_verifier``; this module wires them to the command line.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from extensions.cache import calibrate as cal
from extensions.cache.folds import question_folds
from extensions.cache.pair_features import FEATURES_VERSION
from extensions.cache.pair_model import PairModelError
from extensions.cache.pairs import Pair, PairsError, read_pairs
from extensions.cache.per_intent import per_group, yaml_snippet
from extensions.cache.settings import CacheSettings, VerifierKind
from extensions.cache.verifiers import (
    CandidateVerifier,
    LearnedVerifier,
    RulesVerifier,
    build_verifier,
)
from extensions.config.loader import load_gateway_config
from extensions.embedding.encoder import (
    BatchingEncoder,
    Vectors,
    resolve_model_path,
    sentence_encoder,
)
from extensions.embedding.settings import Embedding


def _fail(command: str, message: str) -> int:
    print(f"gateway {command}: {message}", file=sys.stderr)
    return 2


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _embed(pairs: Sequence[Pair], embedding: Embedding) -> dict[str, Vectors]:
    """Every text's embedding, kept on disk by encoder and texts (re-runs skip encoding)."""
    unique = list(dict.fromkeys([p.a for p in pairs] + [p.b for p in pairs]))
    encoder: BatchingEncoder = sentence_encoder(embedding)
    try:
        digest = hashlib.sha256("\n".join(unique).encode()).hexdigest()[:16]
        name = hashlib.sha256(encoder.fingerprint.encode()).hexdigest()[:16]
        path = embedding.cache_dir / "calibrate" / f"{name}-{digest}.npy"
        if path.exists():
            vectors = np.load(path)
        else:
            vectors = encoder.encode_sync(unique)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, vectors)
    finally:
        encoder.close()
    return dict(zip(unique, vectors, strict=True))


def _settings(config_cache: CacheSettings, args: argparse.Namespace) -> CacheSettings:
    semantic = config_cache.semantic
    changes: dict[str, Any] = {}
    if args.verifier:
        changes["kind"] = VerifierKind(args.verifier)
    if args.verifier_model:
        changes["model"] = args.verifier_model
    if args.min_score is not None:
        changes["min_probability"] = args.min_score
    verifier = semantic.verifier.model_copy(update=changes)
    return config_cache.model_copy(
        update={"semantic": semantic.model_copy(update={"verifier": verifier})}
    )


def _operating_points(
    args: argparse.Namespace, settings: CacheSettings, min_score: float
) -> list[tuple[float, float]]:
    threshold = args.threshold if args.threshold is not None else settings.semantic.threshold
    threshold, min_score = round(threshold, 4), round(min_score, 4)
    if args.target_precision is None:
        return [(threshold, min_score)]
    sweep = args.sweep or ("score" if _has_model(settings) else "threshold")
    if sweep == "score":
        floors = sorted({*cal.FLOOR_GRID, threshold})
        return [(t, s) for t in floors for s in sorted({*cal.SCORE_GRID, min_score})]
    return [(t, min_score) for t in sorted({*cal.GRID, threshold})]


def _has_model(settings: CacheSettings) -> bool:
    """The verifier gives probabilities (its minimum is swept), not the rules' yes or no."""
    return settings.semantic.verifier.kind in (VerifierKind.LEARNED, VerifierKind.CROSS_ENCODER)


def _trained_per_fold(
    settings: CacheSettings,
    embedding: Embedding,
    texts: dict[str, Vectors],
    args: argparse.Namespace,
    scratch: Path,
) -> Callable[[list[Pair]], CandidateVerifier]:
    """``verifier_for(train_pairs)``: a fresh model per fold (the command's only training);
    a cross-encoder per fold is written under ``scratch``."""
    kind = settings.semantic.verifier.kind
    card = {"trained_on": f"{args.pairs.name} (cross-validation fold)", "encoder": embedding.model}

    def verifier_for(train: list[Pair]) -> CandidateVerifier:
        if kind is VerifierKind.CROSS_ENCODER:
            from extensions.cache.train_cross_encoder import Schedule, fit_cross_encoder

            out = scratch / f"fold{len(list(scratch.glob('fold*')))}"
            base = resolve_model_path(embedding.model)
            fit_cross_encoder(train, base, out, card, Schedule(seed=args.seed), print)
            semantic = settings.semantic
            verifier = semantic.verifier.model_copy(update={"model": str(out)})
            exports = embedding.model_copy(update={"cache_dir": scratch})  # gone with scratch
            return build_verifier(semantic.model_copy(update={"verifier": verifier}), exports)
        if kind is not VerifierKind.LEARNED:
            return build_verifier(settings.semantic)
        from extensions.cache.train_verifier import fit

        model = fit(train, texts, card, with_embeddings=not args.no_embeddings, seed=args.seed)
        return LearnedVerifier(
            model,
            "cross-validated",
            settings.semantic.verifier.min_probability,
            settings.semantic.verification,
        )

    return verifier_for


def _held_out(pairs: list[Pair], card: dict[str, Any], sha: str) -> list[Pair] | None:
    """The fold a model trained with ``--hold-out`` on this very file never saw (None: the
    model was not trained that way on this file)."""
    held = card.get("held_out")
    if not isinstance(held, dict) or card.get("trained_on_sha256_16") != sha:
        return None
    try:
        fold, folds, seed = int(held["fold"]), int(held["folds"]), int(held["seed"])
    except (KeyError, TypeError, ValueError):
        return None  # not a card this command wrote: measured as any other model
    fold_of = question_folds(pairs, folds, seed)
    return [p for p, f in zip(pairs, fold_of, strict=True) if f == fold]


def calibrate_cache(args: argparse.Namespace) -> int:
    try:
        pairs = read_pairs(args.pairs, args.answer_agreement)
    except PairsError as exc:
        return _fail("calibrate-cache", str(exc))
    config = load_gateway_config(args.gateway_config)
    embedding = config.embedding
    if args.model:
        embedding = embedding.model_copy(update={"model": args.model})
    settings = _settings(config.cache, args)
    kind = settings.semantic.verifier.kind
    has_model = _has_model(settings)
    min_score = settings.semantic.verifier.min_probability if has_model else RulesVerifier.min_score
    points = _operating_points(args, settings, min_score)
    floor = min(t for t, _ in points)
    if args.folds:  # a verifier per fold, trained here
        described: dict[str, Any] = {"name": kind.value}
    else:
        try:
            verifier = build_verifier(settings.semantic, embedding)
        except PairModelError as exc:
            return _fail("calibrate-cache", str(exc))
        described = verifier.describe()
        card = described.get("card") or {}
        held_out = _held_out(pairs, card, _file_sha(args.pairs))
        if held_out is not None:
            pairs = held_out
            held = card["held_out"]
            described["evaluated_on"] = (
                f"fold {held['fold']} of {held['folds']} ({len(pairs)} pairs), "
                "held out of its training"
            )
            print(f"the verifier was trained with this fold held out: {described['evaluated_on']}")
    if args.limit:  # after the held-out fold: its folds are the whole file's
        pairs = pairs[: args.limit]
    texts = _embed(pairs, embedding)
    if args.folds:
        with tempfile.TemporaryDirectory(prefix="calibrate-folds-") as scratch:
            evidence = cal.cross_validated(
                pairs,
                texts,
                settings,
                _trained_per_fold(settings, embedding, texts, args, Path(scratch)),
                floor,
                args.folds,
                args.seed,
                print,
            )
        if has_model:
            described = {
                "name": kind.value,
                "model": f"trained per fold on {args.folds - 1}/{args.folds} of the pairs",
                "min_probability": min_score,
                "checks": settings.semantic.verification.model_dump(),
            }
        if kind is VerifierKind.LEARNED:
            described["features"] = FEATURES_VERSION
            described["with_embeddings"] = not args.no_embeddings
        elif kind is VerifierKind.RULES:
            described = RulesVerifier(settings.semantic.verification).describe()
    else:
        card = described.get("card") or {}
        in_sample = "evaluated_on" not in described and (
            card.get("trained_on_sha256_16") == _file_sha(args.pairs)
        )
        described = {**described, "in_sample": in_sample}
        if in_sample:
            print(
                "warning: the verifier was trained on these very pairs; use --folds K",
                file=sys.stderr,
            )
        evidence = cal.gather(pairs, texts, settings, verifier, floor)
    found = cal.evaluate(evidence, points)
    print(
        f"{len(pairs)} pairs from {args.pairs}, encoder {embedding.model}, verifier "
        f"{described['name']}" + (f", {args.folds}-fold" if args.folds else "")
    )
    chosen = found[0] if len(points) == 1 else _chosen(found, settings, min_score, args)
    extra: dict[str, Any] = {
        "pairs": len(pairs),
        "source": str(args.pairs),
        "encoder": embedding.model,
        "verifier": described,
        "folds": args.folds or None,
        "seed": args.seed,
    }
    if args.target_precision is not None:
        best = cal.recommend(found, args.target_precision)
        extra["target_precision"] = args.target_precision
        extra["recommended"] = (
            None if best is None else {"threshold": best.threshold, "min_score": best.min_score}
        )
        if best is None:
            print(f"no operating point reaches cache precision {args.target_precision}")
        else:
            chosen = best
            print(
                f"recommended for precision >= {args.target_precision}: threshold "
                f"{best.threshold:.2f}, min score {best.min_score:.2f}"
            )
    print(cal.table([p for p in found if p.threshold == chosen.threshold]))
    ci = cal.confidence(evidence, chosen, args.bootstrap, args.seed)
    extra["ci95"] = ci
    extra["bootstrap"] = {"resamples": args.bootstrap, "seed": args.seed, "unit": "query"}
    extra["lookup_ms"] = cal.lookup_ms(evidence)
    print(_summary(chosen, ci, extra["lookup_ms"]))
    if args.by_intent:
        extra["per_intent"] = _by_intent(pairs, evidence, chosen, args, described["name"])
    if args.json:
        cal.write_json(args.json, chosen, found, extra)
        print(f"wrote {args.json}")
    return 0


def _chosen(
    found: list[cal.Point], settings: CacheSettings, min_score: float, args: argparse.Namespace
) -> cal.Point:
    threshold = args.threshold if args.threshold is not None else settings.semantic.threshold
    key = (round(threshold, 4), round(min_score, 4))
    return next(p for p in found if (p.threshold, p.min_score) == key)


def _summary(p: cal.Point, ci: dict[str, list[float]], ms: dict[str, float]) -> str:
    def span(name: str) -> str:
        low, high = ci[name]
        return f"[{low:.3f}, {high:.3f}]"

    return (
        f"at threshold {p.threshold:.2f}, min score {p.min_score:.2f}: cache precision "
        f"{p.sim_precision:.3f} {span('sim_precision')}, duplicate recall {p.sim_recall:.3f} "
        f"{span('sim_recall')}, hit rate {p.sim_hit_rate:.3f} {span('sim_hit_rate')}, "
        f"paraphrases served {p.paraphrase_served:.3f} {span('paraphrase_served')} "
        f"(bootstrap 95%); lookup + verification p50 {ms.get('p50', 0):.2f} ms, "
        f"p95 {ms.get('p95', 0):.2f} ms"
    )


def _by_intent(
    pairs: list[Pair],
    evidence: cal.Evidence,
    chosen: cal.Point,
    args: argparse.Namespace,
    verifier: str,
) -> list[dict[str, Any]]:
    if args.folds:  # cross-validated evidence is in fold order, not file order
        print(
            "--by-intent uses the verifier as configured; run it without --folds", file=sys.stderr
        )
        return []
    target = args.target_precision if args.target_precision is not None else 0.95
    groups = per_group(
        pairs, evidence.scored, chosen.min_score, target, args.min_pairs, args.bootstrap, args.seed
    )
    if not groups:
        print("no pair names a router: nothing per intent", file=sys.stderr)
        return []
    snippet = yaml_snippet(groups, target, verifier)
    print(snippet, end="")
    if args.yaml_out:
        args.yaml_out.parent.mkdir(parents=True, exist_ok=True)
        args.yaml_out.write_text(snippet, encoding="utf-8")
        print(f"wrote {args.yaml_out}")
    return [g.__dict__ for g in groups]


def _hold_out(spec: str | None) -> tuple[int, int] | None:
    """``K/N`` → (K, N); raises ValueError with the accepted form."""
    if spec is None:
        return None
    fold, _, folds = spec.partition("/")
    try:
        k, n = int(fold), int(folds)
    except ValueError:
        k, n = -1, 0
    if not (n >= 2 and 0 <= k < n):
        raise ValueError(f"--hold-out {spec!r}: expected K/N with N >= 2 and 0 <= K < N, e.g. 0/5")
    return k, n


def train_cache_verifier(args: argparse.Namespace) -> int:
    try:
        pairs = read_pairs(args.pairs)
        hold_out = _hold_out(args.hold_out)
    except (PairsError, ValueError) as exc:
        return _fail("train-cache-verifier", str(exc))
    if any(p.weak for p in pairs):
        return _fail("train-cache-verifier", "train on reviewed labels, not on weak ones")
    config = load_gateway_config(args.gateway_config)
    card: dict[str, Any] = {
        "trained_on": args.pairs.name,
        "trained_on_sha256_16": _file_sha(args.pairs),
        "data_licence": args.data_licence,
        "encoder": config.embedding.model,
    }
    everything = pairs
    if hold_out is not None:
        k, n = hold_out
        fold_of = question_folds(pairs, n, args.seed)
        pairs = [p for p, f in zip(pairs, fold_of, strict=True) if f != k]
        card["held_out"] = {"fold": k, "folds": n, "seed": args.seed}
    if args.kind == VerifierKind.CROSS_ENCODER.value:
        return _train_cross_encoder(pairs, card, config.embedding, args)
    from extensions.cache.train_verifier import fit

    texts = _embed(everything, config.embedding)  # the whole file's: cached for calibrate-cache
    model = fit(
        pairs,
        texts,
        card,
        with_embeddings=not args.no_embeddings,
        hidden=args.hidden,
        seed=args.seed,
    )
    model.save(args.out)
    print(
        f"trained on {len(pairs)} pairs in {model.card['train_seconds']} s "
        f"({model.card['epochs']} epochs); wrote {args.out}"
    )
    return 0


def _train_cross_encoder(
    pairs: list[Pair], card: dict[str, Any], embedding: Embedding, args: argparse.Namespace
) -> int:
    from extensions.embedding.training_deps import require_training_deps

    require_training_deps("train-cache-verifier --kind cross-encoder")
    from extensions.cache.train_cross_encoder import Schedule, fit_cross_encoder

    base = resolve_model_path(args.base_model or embedding.model)
    if args.epochs <= 0:
        return _fail("train-cache-verifier", f"--epochs {args.epochs}: must be above 0")
    schedule = Schedule(epochs=args.epochs, seed=args.seed)
    fit_cross_encoder(pairs, base, args.out, card, schedule, print)
    print(f"trained on {len(pairs)} pairs; wrote {args.out}")
    return 0
