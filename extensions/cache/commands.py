"""``gateway calibrate-cache`` and ``gateway train-cache-verifier``: argument handling.

The measuring is in ``calibrate`` (and ``per_intent``), the training in
``train_verifier``; this module wires them to the command line.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from extensions.cache import calibrate as cal
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
from extensions.embedding.encoder import BatchingEncoder, Vectors, sentence_encoder
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
    learned = settings.semantic.verifier.kind is VerifierKind.LEARNED
    sweep = args.sweep or ("score" if learned else "threshold")
    if sweep == "score":
        floors = sorted({*cal.FLOOR_GRID, threshold})
        return [(t, s) for t in floors for s in sorted({*cal.SCORE_GRID, min_score})]
    return [(t, min_score) for t in sorted({*cal.GRID, threshold})]


def _learned_on(
    settings: CacheSettings,
    embedding: Embedding,
    texts: dict[str, Vectors],
    args: argparse.Namespace,
) -> Any:
    """``verifier_for(train_pairs)``: a fresh model per fold (the command's only training)."""
    from extensions.cache.train_verifier import fit

    def verifier_for(train: list[Pair]) -> CandidateVerifier:
        if settings.semantic.verifier.kind is not VerifierKind.LEARNED:
            return build_verifier(settings.semantic)
        card = {
            "trained_on": f"{args.pairs.name} (cross-validation fold)",
            "encoder": embedding.model,
        }
        model = fit(train, texts, card, with_embeddings=not args.no_embeddings, seed=args.seed)
        return LearnedVerifier(
            model,
            "cross-validated",
            settings.semantic.verifier.min_probability,
            settings.semantic.verification,
        )

    return verifier_for


def calibrate_cache(args: argparse.Namespace) -> int:
    try:
        pairs = read_pairs(args.pairs, args.answer_agreement)
    except PairsError as exc:
        return _fail("calibrate-cache", str(exc))
    if args.limit:
        pairs = pairs[: args.limit]
    config = load_gateway_config(args.gateway_config)
    embedding = config.embedding
    if args.model:
        embedding = embedding.model_copy(update={"model": args.model})
    settings = _settings(config.cache, args)
    learned = settings.semantic.verifier.kind is VerifierKind.LEARNED
    min_score = settings.semantic.verifier.min_probability if learned else RulesVerifier.min_score
    points = _operating_points(args, settings, min_score)
    floor = min(t for t, _ in points)
    if args.folds:  # a verifier per fold, trained here
        described: dict[str, Any] = {"name": settings.semantic.verifier.kind.value}
    else:
        try:
            verifier = build_verifier(settings.semantic)
        except PairModelError as exc:
            return _fail("calibrate-cache", str(exc))
        described = verifier.describe()
    texts = _embed(pairs, embedding)
    if args.folds:
        evidence = cal.cross_validated(
            pairs,
            texts,
            settings,
            _learned_on(settings, embedding, texts, args),
            floor,
            args.folds,
            args.seed,
            print,
        )
        if learned:
            described = {
                "name": "learned",
                "model": f"trained per fold on {args.folds - 1}/{args.folds} of the pairs",
                "features": FEATURES_VERSION,
                "with_embeddings": not args.no_embeddings,
                "min_probability": min_score,
                "checks": settings.semantic.verification.model_dump(),
            }
        else:
            described = RulesVerifier(settings.semantic.verification).describe()
    else:
        card = described.get("card") or {}
        in_sample = card.get("trained_on_sha256_16") == _file_sha(args.pairs)
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


def train_cache_verifier(args: argparse.Namespace) -> int:
    from extensions.cache.train_verifier import fit

    try:
        pairs = read_pairs(args.pairs)
    except PairsError as exc:
        return _fail("train-cache-verifier", str(exc))
    if any(p.weak for p in pairs):
        return _fail("train-cache-verifier", "train on reviewed labels, not on weak ones")
    config = load_gateway_config(args.gateway_config)
    texts = _embed(pairs, config.embedding)
    card = {
        "trained_on": args.pairs.name,
        "trained_on_sha256_16": _file_sha(args.pairs),
        "data_licence": args.data_licence,
        "encoder": config.embedding.model,
    }
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
