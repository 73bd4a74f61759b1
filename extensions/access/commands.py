"""``gateway new-key``: make a gateway key, print it once and the YAML entry to paste."""

from __future__ import annotations

import argparse

import yaml

from extensions.access.keys import new_key


def new_key_command(args: argparse.Namespace) -> int:
    made = new_key()
    entry: dict[str, object] = {"alias": args.alias, "owner": args.owner}
    if args.team:
        entry["team"] = args.team
    if args.models:
        entry["models"] = args.models
    entry.update(key_id=made.key_id, hash=made.hash)
    print(f"key (shown once; give it to {args.owner}, it is not stored anywhere):\n")
    print(f"  {made.key}\n")
    print("add under access.keys in config/gateway.yaml:\n")
    print(yaml.safe_dump([entry], sort_keys=False).rstrip())
    return 0


def usage_command(args: argparse.Namespace) -> int:
    """Print the gateway's usage (``GET /gateway/usage``) as tables; the master key only."""
    import json
    import os
    import sys

    import httpx

    key = args.key or os.environ.get("LITELLM_MASTER_KEY", "")
    params = {"day": args.day} if args.day else {}
    try:
        resp = httpx.get(f"{args.url.rstrip('/')}/gateway/usage", params=params,
                         headers={"Authorization": f"Bearer {key}"}, timeout=10)  # fmt: skip
    except httpx.HTTPError as exc:
        print(f"gateway usage: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 2
    if resp.status_code != 200:
        print(f"gateway usage: {resp.status_code} {resp.text}", file=sys.stderr)
        return 2
    report = resp.json()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"usage on {report['day']} (UTC)")
    for kind in ("key", "team", "model"):
        rows = report.get(kind) or {}
        print(f"\n{kind:<24} {'requests':>9} {'tokens':>10} {'spend $':>10} {'saved $':>10}")
        for name, row in sorted(rows.items()):
            print(f"{name:<24} {row['requests']:>9} {row['tokens']:>10} "
                  f"{row['spend_usd']:>10.4f} {row['saved_usd']:>10.4f}")  # fmt: skip
    for subject, periods in (report.get("budgets") or {}).items():
        for period, b in periods.items():
            print(f"\nbudget {subject} {period}: ${b['left_usd']:.4f} left of "
                  f"${b['budget_usd']:.2f} (resets {b['resets_at']})")  # fmt: skip
    return 0
