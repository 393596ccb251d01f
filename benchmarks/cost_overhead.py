"""What cost and budgets add to one call (no network): pricing an answer, reserving its
worst case in the in-memory budgets and settling it, through the pipeline's own
functions; target: under 20 microseconds per call with the in-memory budget.

    python -m benchmarks.cost_overhead            # prints and rewrites its section
    python -m benchmarks.cost_overhead --no-doc   # prints only

Its section of docs/benchmarks.md sits between the markers below; ``benchmarks.run``
carries it over when it rewrites the file.
"""

from __future__ import annotations

import argparse
import platform
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from benchmarks.measure import median
from benchmarks.report import write_section

START = "<!-- cost_overhead:start -->"
END = "<!-- cost_overhead:end -->"
TARGET_US = 20.0
TOTAL = "reserve + response.cost + settle: the bookkeeping per call"
DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def micro(stmt: Any, repeats: int = 5, target: float = 0.05) -> tuple[float, float]:
    """``(median, best)`` microseconds per call over ``repeats`` timeit runs (the best run
    is the least disturbed on a shared machine)."""
    import timeit

    timer = timeit.Timer(stmt)
    number = 1
    while True:
        took = timer.timeit(number)
        if took >= target / 10 or number >= 10_000_000:
            break
        number *= 10
    number = max(1, int(number * target / max(took, 1e-9)))
    runs = [t / number * 1e6 for t in timer.repeat(repeats, number)]
    return median(runs), min(runs)


def _client(budgets: bool) -> Any:
    import chatcore
    from chatcore._plugins import PluginHost
    from chatcore.provider import Option, ProviderSpec
    from chatcore.testing.helpers import OpenAIWireProvider

    class Plugin:
        @chatcore.hookimpl
        def chatcore_providers(self) -> list[ProviderSpec]:
            options = {"api_key": Option(secret=True, required=False), "base_url": Option()}
            return [ProviderSpec(name="openai", factory=OpenAIWireProvider, options=options)]

    plugins: list[Any] = [Plugin()]
    try:
        import chatcore_cost

        plugins.append(chatcore_cost)
    except ImportError:  # the user's prices only
        pass
    host = PluginHost(load_entry_points=False, plugins=plugins, environ={})
    kwargs: dict[str, Any] = {}
    if budgets:
        kwargs["budgets"] = {
            "client": {"usd": 1_000_000, "period": "month"},
            "openai": {"usd": 1_000_000, "period": "day"},
            "key:*": {"usd": 1_000_000, "period": "day"},
        }
    return chatcore.Client(
        plugin_host=host,
        providers={"openai": {"api_key": "sk-bench", "base_url": "http://127.0.0.1:9/v1"}},
        environ={},
        **kwargs,
    )


def measure(repeats: int = 5) -> list[tuple[str, tuple[float, float]]]:
    """``(what, (median, best) us per call)``."""
    from chatcore._pipeline import _priced, _reserve_budget, _settle_budget, run_sync
    from chatcore.models import ChatResponse, Choice, Message, Usage

    client = _client(budgets=True)
    plain = _client(budgets=False)
    request = client.build_request("openai:gpt-4o-mini", "Write a haiku about budgets.")
    request = request.__class__(**{**_fields(request), "max_tokens": 256})
    response = ChatResponse(
        id="bench",
        model="gpt-4o-mini-2024-07-18",
        choices=(Choice(0, Message("assistant", "Five syllables here")),),
        usage=Usage(prompt_tokens=21, completion_tokens=17, cached_tokens=0),
    )
    source = "chatcore-cost (genai-prices)" if client.pricing.source is not None else "none"
    if client.pricing.source is None:  # no plugin: price it from the user's table
        from chatcore._cost import Rates

        rate = Rates(Decimal("0.15"), Decimal("0.6"))
        client.pricing.overrides["openai"] = plain.pricing.overrides["openai"] = rate
    assert client.pricing.cost(request, response) is not None

    def bookkeeping() -> None:
        booking = run_sync(_reserve_budget(client, request, None, "tenant-42"))
        priced = _priced(client, request, response)
        run_sync(_settle_budget(client, booking, None, priced.cost))

    from chatcore._estimate import estimate_prompt_tokens

    store = client.budgets.store

    def reserve() -> None:
        booking = run_sync(_reserve_budget(client, request, None, "tenant-42"))
        store.settle(booking, 0)  # keeps the table from filling; a few dict operations

    rows = [
        (
            "prompt tokens counted (tiktoken, cl100k offline)",
            micro(lambda: estimate_prompt_tokens(request), repeats),
        ),
        ("reserve: estimate, worst case, 3 budgets", micro(reserve, repeats)),
        (
            "response.cost (remembered price, Rates)",
            micro(lambda: _priced(plain, request, response), repeats),
        ),
        (TOTAL, micro(bookkeeping, repeats)),
        (
            "without budgets: the pipeline's check",
            micro(lambda: run_sync(_reserve_budget(plain, request, None, None)), repeats),
        ),
    ]
    client.close()
    plain.close()
    print(f"prices: {source}", file=sys.stderr)
    return rows


def _fields(request: Any) -> dict[str, Any]:
    import attrs

    return {f.name: getattr(request, f.name) for f in attrs.fields(type(request))}


def section(rows: list[tuple[str, tuple[float, float]]]) -> str:
    import os

    total, best = dict(rows)[TOTAL]
    verdict = "met" if total < TARGET_US else "missed"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        START,
        "## Cost and budget bookkeeping per call (`benchmarks/cost_overhead.py`)",
        "",
        f"timeit, no network; Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {load:.2f} while measuring; target under "
        f"{TARGET_US:g} us with the in-memory budget: **{verdict}** (median {total:.1f} us, "
        f"best run {best:.1f} us).",
        "",
        "| what | median us per call | best run |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {us:.1f} | {low:.1f} |" for name, (us, low) in rows),
        "",
        END,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    rows = measure(args.repeats)
    text = section(rows)
    print(text)
    if not args.no_doc:
        write_section(DOC, START, END, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
