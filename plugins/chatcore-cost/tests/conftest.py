"""chatcore-cost needs genai-prices (Python >= 3.11): without it, its tests are skipped."""

from __future__ import annotations

import importlib.util

collect_ignore_glob = [] if importlib.util.find_spec("chatcore_cost") else ["test_*.py"]
