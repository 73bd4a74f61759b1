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
