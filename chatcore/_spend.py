"""``chatcore spend``: each budget's state in its current period (shared through Redis
when ``CHATCORE_REDIS_BUDGETS=1``), and a model's price."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, TextIO

__all__ = ["add_spend_parser", "cmd_spend"]


def add_spend_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``spend`` command to ``subparsers``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "spend",
        help="show each budget's spend in its current period, or a model's price",
        description="Show the configured budgets (chatcore.toml [budgets], CHATCORE_BUDGETS): "
        "spent, reserved by calls in flight, remaining, when each resets. Budgets kept in "
        "Redis (CHATCORE_REDIS_BUDGETS=1) show what every process spent.",
    )
    p.add_argument("--scope", help="one scope only, e.g. key:acme or route:cheap")
    p.add_argument("--model", metavar="PROVIDER:MODEL", help="show this model's price instead")
    p.add_argument("--config", metavar="PATH", help="settings file (default: ./chatcore.toml)")
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def cmd_spend(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``chatcore spend``."""
    from chatcore import Client

    with Client(config_path=args.config) as client:
        if args.model:
            return _price(client, args.model, args.json, out)
        states = client.spend(args.scope)
    if args.json:
        json.dump([s.to_dict() for s in states], out, indent=2)
        out.write("\n")
        return 0
    if not states:
        out.write("no budgets configured (see docs/cost.md: [budgets] in chatcore.toml)\n")
        return 0
    rows = [["scope", "period", "limit", "spent", "reserved", "remaining", "resets (UTC)"]]
    for s in states:
        rows.append(
            [
                s.scope,
                s.period,
                f"${s.limit}",
                f"${s.spent}",
                f"${s.reserved}",
                f"${s.remaining}",
                time.strftime("%Y-%m-%d %H:%M", time.gmtime(s.resets_at)),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")
    return 0


def _price(client: Any, model: str, as_json: bool, out: TextIO) -> int:
    from chatcore._validate import split_model

    provider, model_id = split_model(model)
    price = client.pricing.price_of(provider, model_id)
    if price is None:
        out.write(
            f"{model}: price unknown (pip install chatcore-cost, or give it in "
            f'[prices."{model}"])\n'
        )
        return 1
    rates = {
        name: str(value)
        for name in ("input", "output", "cached_input", "cache_write", "reasoning")
        if (value := getattr(price, name, None)) is not None
    }
    if as_json:
        json.dump({"model": model, "usd_per_million_tokens": rates}, out, indent=2)
        out.write("\n")
    elif rates:
        shown = ", ".join(f"{k} ${v}" for k, v in rates.items())
        out.write(f"{model}: {shown} per million tokens\n")
    else:
        out.write(f"{model}: priced by genai-prices (tiered or per-request prices)\n")
    return 0
