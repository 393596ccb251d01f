"""The published benchmark figures come from one place: ``docs/benchmarks.md``, its charts
and the README's figures are exactly what ``benchmarks/report.py`` draws from the committed
``benchmarks/results/results.json`` (``python -m benchmarks.report`` writes them), so the
README and the docs cannot disagree; and the report cites no file the repository lacks.

No benchmark runs here (speed is measured by ``python -m benchmarks.run``, not asserted).
"""

from __future__ import annotations

import copy
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import report  # noqa: E402

sys.path.remove(str(ROOT))

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(report.RESULTS.read_text(encoding="utf-8"))
    return data


def test_published_files_are_what_the_results_give(results):
    stale = report.stale(results)
    assert stale == [], f"stale: {stale}; run python -m benchmarks.report"
    assert report.CHART_DIR / "sync-chat.svg" in report.rendered(results)


def test_readme_and_docs_show_the_same_figures(results):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    doc = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    section = readme[readme.index(report.README_START) : readme.index(report.README_END)]
    figures = re.findall(r"\d+\.\d+x", section)
    assert len(figures) >= 3
    for prefix, figure in zip(
        (
            "Client.chat vs bare requests.Session.post",
            "import chatcore vs import requests",
            "AsyncClient throughput vs AsyncOpenAI, slow server, chat (0.3 s), 256 in flight",
        ),
        figures,
    ):
        row = next(line for line in doc.splitlines() if line.startswith(f"| {prefix}"))
        assert f"| {figure} |" in row, (prefix, figure, row)


def test_a_new_figure_reaches_the_readme_and_the_docs(results, tmp_path):
    changed = copy.deepcopy(results)
    for row in changed["targets"]:
        if row["name"].startswith("Client.chat vs bare requests.Session.post"):
            row["measured"] = "0.42x"
    (tmp_path / "README.md").write_text(
        f"intro\n{report.README_START}\nold\n{report.README_END}\nrest\n", encoding="utf-8"
    )
    files = report.rendered(changed, tmp_path)
    assert "costs 0.42x a bare `requests` post" in files[Path("README.md")]
    assert files[Path("README.md")].startswith("intro\n") and files[Path("README.md")].endswith(
        "\nrest\n"
    )
    assert "| 0.42x |" in files[report.DOC]
    assert report.stale(changed) != []


def test_the_report_cites_only_files_in_the_repository():
    doc = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert "DESIGN.md" not in doc
    cited = set(re.findall(r"`((?:benchmarks|docs|chatcore|plugins|tests)/[\w./-]+\.\w+)`", doc))
    cited |= set(re.findall(r"\]\(([\w./-]+\.(?:svg|md|png))\)", doc))
    assert cited
    missing = sorted(
        path
        for path in cited
        if not (ROOT / path).is_file() and not (ROOT / "docs" / path).is_file()
    )
    assert missing == []
    assert "/root/" not in doc and "/tmp/" not in doc, "a machine's path in the report"
    assert str(ROOT) not in doc, "a path of this checkout in the report"


def _bars(chart: str) -> dict[str, tuple[float, float]]:
    root = ET.fromstring(chart)
    return {
        rect.get("data-label", ""): (float(rect.get("width", 0)), float(rect.get("data-value", 0)))
        for rect in root.iter(f"{SVG}rect")
        if rect.get("class") == "bar"
    }


def test_bar_charts_draw_the_tables_figures(results):
    charts = report.charts(results)
    bars = _bars(charts["sync-chat.svg"][0])
    # chatcore against bare requests, the OpenAI SDK and LiteLLM, from the chat table
    for name in (report.REQ, report.CC, "OpenAI SDK", "LiteLLM"):
        assert bars[name][1] == pytest.approx(results["chat"][name]["median_us"], rel=1e-5)
    # bar lengths are proportional to the figures
    (w1, v1), (w2, v2) = bars[report.REQ], bars[report.CC]
    assert w1 / w2 == pytest.approx(v1 / v2, rel=1e-3)
    assert not any("what-if" in name for name in bars)
    imports = _bars(charts["imports.svg"][0])
    assert imports["import chatcore"][1] == pytest.approx(
        results["imports"]["import chatcore"]["ms"], rel=1e-5
    )


def test_async_charts_plot_throughput_against_calls_in_flight(results):
    chart = report.charts(results)["async-throughput-chat.svg"][0]
    points: dict[str, dict[float, float]] = {}
    for circle in ET.fromstring(chart).iter(f"{SVG}circle"):
        points.setdefault(circle.get("data-label", ""), {})[float(circle.get("data-x", 0))] = float(
            circle.get("data-value", 0)
        )
    slow = results["async"]["slow"]["chat"]
    assert set(points) == set(slow["256"])
    for level, contenders in slow.items():
        for name, res in contenders.items():
            assert points[name][float(level)] == pytest.approx(res["per_s"], rel=1e-5)
    # higher is drawn higher: the larger figure has the smaller y
    cys = {
        circle.get("data-label"): float(circle.get("cy", 0))
        for circle in ET.fromstring(chart).iter(f"{SVG}circle")
        if circle.get("data-x") == "256"
    }
    ordered = sorted(slow["256"], key=lambda name: slow["256"][name]["per_s"])
    assert [cys[name] for name in ordered] == sorted(cys.values(), reverse=True)


def test_charts_leave_out_what_was_not_measured(results):
    partial = {key: value for key, value in results.items() if key not in ("async", "imports")}
    names = set(report.charts(partial))
    assert names == {"sync-chat.svg", "sync-stream.svg", "sync-stream-chunked.svg"}
    no_peers = copy.deepcopy(results)
    for name in ("OpenAI SDK", "LiteLLM"):
        no_peers["chat"].pop(name)
    assert set(_bars(report.charts(no_peers)["sync-chat.svg"][0])) == {
        name
        for name in results["chat"]
        if "what-if" not in name and name not in ("OpenAI SDK", "LiteLLM")
    }


def test_machine_paths_are_tidied():
    text = (
        "`/root/.pyenv/versions/3.11.7/lib/python3.11/tracemalloc.py:560` and "
        "`/x/lib/python3.12/site-packages/urllib3/connection.py:1`"
    )
    assert report.tidy_paths(text) == "`tracemalloc.py:560` and `urllib3/connection.py:1`"
    checkout = "/srv/checkout/chatcore/_http.py:508"
    assert report.tidy_paths(checkout, Path("/srv/checkout")) == "chatcore/_http.py:508"


def test_the_committed_results_hold_no_path_of_this_checkout():
    """The results the figures come from are committed: no absolute path in them."""
    text = (ROOT / "benchmarks" / "results" / "results.json").read_text(encoding="utf-8")
    assert str(ROOT) not in text
    assert not re.search(r'"/(?:root|home|tmp|work)/', text)
