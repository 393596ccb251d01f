"""``chatcore spend`` (chatcore._spend), run as a real subprocess: the budgets of
chatcore.toml with their period, limit and spend; one scope; JSON; a model's price from
the user's prices; exit 1 for an unknown price; a bad budget is a configuration error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CHATCORE_")}


def spend(tmp_path: Path, env: dict[str, str], *args: str) -> Any:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "chatcore._cli",
            "spend",
            "--config",
            str(tmp_path / "c.toml"),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )


CONFIG = """
[budgets.client]
usd = 25
period = "month"

[budgets."key:*"]
usd = 0.5
period = "day"

[prices."openai:my-deployment"]
input = 2.5
output = 10
cached_input = 1.25
"""


def test_spend_lists_budgets_and_prices(tmp_path, env):
    (tmp_path / "c.toml").write_text(CONFIG, encoding="utf-8")
    table = spend(tmp_path, env)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "scope",
        "period",
        "limit",
        "spent",
        "reserved",
        "remaining",
        "resets",
        "(UTC)",
    ]
    assert lines[1].split()[:6] == ["client", "month", "$25", "$0", "$0", "$25"]
    assert len(lines) == 2  # key:* is per key
    one = spend(tmp_path, env, "--scope", "key:acme", "--json")
    assert one.returncode == 0, one.stderr
    (state,) = json.loads(one.stdout)
    assert state["scope"] == "key:acme" and state["limit_usd"] == "0.5"
    assert state["remaining_usd"] == "0.5" and state["resets_at"] % 86400 == 0
    price = spend(tmp_path, env, "--model", "openai:my-deployment")
    assert price.returncode == 0, price.stderr
    assert price.stdout.strip() == (
        "openai:my-deployment: input $2.5, output $10, cached_input $1.25 per million tokens"
    )
    unknown = spend(tmp_path, env, "--model", "openai:not-a-model-anywhere")
    assert unknown.returncode == 1
    assert "price unknown" in unknown.stdout


def test_spend_without_budgets_and_with_a_bad_one(tmp_path, env):
    (tmp_path / "c.toml").write_text("", encoding="utf-8")
    empty = spend(tmp_path, env)
    assert empty.returncode == 0 and "no budgets configured" in empty.stdout
    (tmp_path / "c.toml").write_text('[budgets.client]\nusd = 5\nperiod = "fortnight"\n')
    bad = spend(tmp_path, env)
    assert bad.returncode == 3
    assert "budgets['client'].period='fortnight'" in bad.stderr
