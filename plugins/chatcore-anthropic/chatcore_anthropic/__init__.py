"""chatcore provider plugin for Anthropic's Messages API (Claude).

Registers the ``anthropic`` provider through the ``chatcore`` entry point; use it as
``"anthropic:claude-sonnet-4-5"`` with :class:`chatcore.Client` or
:class:`chatcore.AsyncClient`. The provider only translates: the core sends, retries, limits
and records. Its code is imported only when a client first uses it.
"""

from __future__ import annotations

from chatcore import hookimpl
from chatcore.provider import ProviderSpec

__version__ = "0.1.0"

__all__ = ["__version__", "chatcore_providers"]


@hookimpl
def chatcore_providers() -> list[ProviderSpec]:
    """The ``anthropic`` provider."""
    from chatcore_anthropic._provider import SPEC

    return [SPEC]
