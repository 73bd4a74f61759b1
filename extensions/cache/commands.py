"""``gateway calibrate-cache``: argument handling only (the measuring is in ``calibrate``)."""

from __future__ import annotations

import argparse
import sys

from extensions.cache.calibrate import GRID, PairsError, read_pairs, recommend, run, table
from extensions.cache.calibrate import write_json as write_report
from extensions.config.loader import load_gateway_config
from extensions.embedding.encoder import sentence_encoder


def calibrate_cache(args: argparse.Namespace) -> int:
    try:
        pairs = read_pairs(args.pairs)
    except PairsError as exc:
        print(f"gateway calibrate-cache: {exc}", file=sys.stderr)
        return 2
    if args.limit:
        pairs = pairs[: args.limit]
    config = load_gateway_config(args.gateway_config)
    embedding = config.embedding
    if args.model:
        embedding = embedding.model_copy(update={"model": args.model})
    sweep = args.target_precision is not None
    threshold = args.threshold if args.threshold is not None else config.cache.semantic.threshold
    grid = sorted({*GRID, round(threshold, 4)}) if sweep else [threshold]
    encoder = sentence_encoder(embedding)
    try:
        points = run(pairs, encoder.encode_sync, config.cache, grid)
    finally:
        encoder.close()
    print(f"{len(pairs)} pairs from {args.pairs}, encoder {embedding.model}")
    print(table(points))
    chosen = next(p for p in points if p.threshold == round(threshold, 4))
    extra = {"pairs": len(pairs), "source": str(args.pairs), "encoder": embedding.model,
             "verification": config.cache.semantic.verification.model_dump()}  # fmt: skip
    if sweep:
        best = recommend(points, args.target_precision)
        extra["target_precision"] = args.target_precision
        if best is None:
            print(f"no threshold reaches cache precision {args.target_precision}; "
                  f"keeping {threshold}")  # fmt: skip
            extra["recommended"] = None
        else:
            print(f"recommended threshold for precision >= {args.target_precision}: "
                  f"{best.threshold:.2f} (cache precision {best.sim_precision:.3f}, "
                  f"recall {best.sim_recall:.3f})")  # fmt: skip
            extra["recommended"] = best.threshold
            chosen = best
    if args.json:
        write_report(args.json, chosen, points, extra)
        print(f"wrote {args.json}")
    return 0
