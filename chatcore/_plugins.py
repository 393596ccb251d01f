"""The plugin host: a typed facade over pluggy that loads ``chatcore`` entry points.

Each entry point is loaded and registered in its own guard; a plugin that fails to import,
implements a hook that does not exist, or offers a provider name another plugin already
has is recorded (with its distribution and version) and skipped, and the others still
work. ``CHATCORE_STRICT_PLUGINS=1`` turns such a failure into :class:`PluginLoadError`;
``CHATCORE_DISABLE_PLUGINS=a,b`` blocks plugins by name. Nothing else touches ``pm.hook``.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import pluggy

from chatcore import hookspecs
from chatcore.exceptions import PluginLoadError, ProviderNotFoundError
from chatcore.provider import ProviderSpec

__all__ = ["PluginHost", "PluginRecord", "PluginWarning", "get_plugin_host", "list_plugins"]

ENTRY_POINT_GROUP = "chatcore"
_HOOK_NAMES = frozenset(n for n in dir(hookspecs) if n.startswith("chatcore_"))


class PluginWarning(UserWarning):
    """A plugin could not be loaded; the others still work."""


@attrs.frozen
class PluginRecord:
    """What is known about one plugin: where it came from and what it offers, or why it
    failed (``error``)."""

    name: str
    distribution: str | None = None
    version: str | None = None
    hooks: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    error: str | None = None
    disabled: bool = False
    builtin: bool = False
    #: Providers written against chatcore 0.1 (they do their own blocking I/O): they work
    #: under ``Client``, and under ``AsyncClient`` only in worker threads.
    sync_only: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the plugin loaded and is in use."""
        return self.error is None and not self.disabled

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of this record."""
        return attrs.asdict(self)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class PluginHost:
    """Loads plugins once and answers typed questions about them."""

    def __init__(
        self,
        *,
        load_entry_points: bool = True,
        plugins: Iterable[Any] = (),
        environ: Mapping[str, str] | None = None,
        entry_points: Sequence[Any] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.strict = _truthy(env.get("CHATCORE_STRICT_PLUGINS"))
        self.disabled = frozenset(
            n.strip() for n in env.get("CHATCORE_DISABLE_PLUGINS", "").split(",") if n.strip()
        )
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self._records: dict[str, PluginRecord] = {}
        self._providers: dict[str, ProviderSpec] = {}
        self._provider_owner: dict[str, str] = {}

        from chatcore import _defaults

        self.pm.register(_defaults, name="chatcore.defaults")
        self._records["chatcore.defaults"] = PluginRecord(
            name="chatcore.defaults",
            distribution="chatcore",
            version=_core_version(),
            hooks=self._hooks_of(_defaults),
            builtin=True,
        )
        if load_entry_points:
            import importlib.metadata

            eps = (
                entry_points
                if entry_points is not None
                else importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
            )
            for ep in sorted(eps, key=lambda e: e.name):
                self._load_entry_point(ep)
        for i, plugin in enumerate(plugins):
            name = getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{i}"
            self._register(plugin, name=name, distribution=None, version=None)

    # --- loading ---------------------------------------------------------------------

    def _load_entry_point(self, ep: Any) -> None:
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        dist_version = dist.version if dist is not None else None
        if ep.name in self.disabled:
            self._records[ep.name] = PluginRecord(
                name=ep.name, distribution=dist_name, version=dist_version, disabled=True
            )
            return
        try:
            plugin = ep.load()
        except Exception as exc:  # a plugin may fail in any way; never break the others
            self._fail(ep.name, dist_name, dist_version, f"failed to import: {_describe(exc)}", exc)
            return
        self._register(plugin, name=ep.name, distribution=dist_name, version=dist_version)

    def _register(
        self, plugin: Any, *, name: str, distribution: str | None, version: str | None
    ) -> None:
        if self.pm.is_registered(plugin):
            return  # the same module/object passed again (e.g. an installed plugin in plugins=)
        unknown = sorted(
            attr
            for attr in dir(plugin)
            if self.pm.parse_hookimpl_opts(plugin, attr) is not None and attr not in _HOOK_NAMES
        )
        if unknown:
            known = ", ".join(sorted(_HOOK_NAMES))
            self._fail(
                name,
                distribution,
                version,
                f"implements unknown hook(s) {', '.join(unknown)} (known hooks: {known})",
            )
            return
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # pluggy.PluginValidationError, ValueError (already registered)
            self._fail(name, distribution, version, f"failed to register: {_describe(exc)}", exc)
            return
        providers: list[str] = []
        error = None
        if hasattr(plugin, "chatcore_providers"):
            try:
                specs = list(plugin.chatcore_providers() or ())
                for spec in specs:
                    if not isinstance(spec, ProviderSpec):
                        raise TypeError(
                            f"chatcore_providers returned {type(spec).__name__}, "
                            "expected chatcore.provider.ProviderSpec"
                        )
            except Exception as exc:
                self.pm.unregister(plugin)
                self._fail(
                    name, distribution, version, f"chatcore_providers failed: {_describe(exc)}", exc
                )
                return
            for spec in specs:
                owner = self._provider_owner.get(spec.name)
                if owner is not None:
                    error = (
                        f"provider {spec.name!r} is already provided by plugin {owner!r}"
                        f" ({self._providers[spec.name].plugin}); this plugin's"
                        f" {spec.name!r} was skipped"
                    )
                    continue
                self._providers[spec.name] = attrs.evolve(
                    spec,
                    plugin=distribution or spec.plugin or name,
                    version=version or spec.version,
                )
                self._provider_owner[spec.name] = name
                providers.append(spec.name)
        record = PluginRecord(
            name=name,
            distribution=distribution,
            version=version,
            hooks=self._hooks_of(plugin),
            providers=tuple(providers),
            error=error,
            sync_only=tuple(p for p in providers if self._providers[p].translates is False),
        )
        self._records[name] = record
        if error is not None:
            self._report(record, None)

    def _fail(
        self,
        name: str,
        distribution: str | None,
        version: str | None,
        error: str,
        exc: BaseException | None = None,
    ) -> None:
        record = PluginRecord(name=name, distribution=distribution, version=version, error=error)
        self._records[name] = record
        self._report(record, exc)

    def _report(self, record: PluginRecord, exc: BaseException | None) -> None:
        where = record.distribution or record.name
        if record.version:
            where += f" {record.version}"
        message = f"chatcore plugin {record.name!r} ({where}): {record.error}"
        if self.strict:
            raise PluginLoadError(message) from exc
        warnings.warn(message, PluginWarning, stacklevel=4)

    def _hooks_of(self, plugin: Any) -> tuple[str, ...]:
        return tuple(
            sorted(a for a in dir(plugin) if self.pm.parse_hookimpl_opts(plugin, a) is not None)
        )

    # --- typed hook calls ------------------------------------------------------------

    def providers(self) -> dict[str, ProviderSpec]:
        """Every provider offered by a loaded plugin, by name."""
        return dict(self._providers)

    def provider_spec(self, name: str) -> ProviderSpec:
        """The spec of provider ``name``, or :class:`ProviderNotFoundError`."""
        try:
            return self._providers[name]
        except KeyError:
            raise ProviderNotFoundError(name, self._providers) from None

    def retry_policy(self, settings: Any) -> Any:
        """The first plugin's retry policy (the core default is last)."""
        return self.pm.hook.chatcore_retry_policy(settings=settings)

    def rate_limiter(self, settings: Any) -> Any:
        """The first plugin's rate limiter (the core default is last)."""
        return self.pm.hook.chatcore_rate_limiter(settings=settings)

    def cache(self, settings: Any) -> Any:
        """The first plugin's cache (the core default is last)."""
        return self.pm.hook.chatcore_cache(settings=settings)

    def pricing(self, settings: Any) -> Any:
        """The first non-None ``chatcore_pricing`` result (a price source, or ``None``)."""
        return self.pm.hook.chatcore_pricing(settings=settings)

    def budget_store(self, settings: Any) -> Any:
        """The first non-None ``chatcore_budget_store`` result."""
        return self.pm.hook.chatcore_budget_store(settings=settings)

    def metrics_sinks(self, settings: Any) -> list[Any]:
        """All plugins' metrics sinks, flattened."""
        return _flattened(self.pm.hook.chatcore_metrics_sinks(settings=settings))

    def tracers(self, settings: Any) -> list[Any]:
        """All plugins' tracers, flattened."""
        return _flattened(self.pm.hook.chatcore_tracers(settings=settings))

    def records(self) -> list[PluginRecord]:
        """A record per plugin, built-ins first, then by name."""
        return sorted(self._records.values(), key=lambda r: (not r.builtin, r.name))


def _flattened(results: Iterable[Any]) -> list[Any]:
    """The items of a collecting hook's results (``None`` and empty results skipped)."""
    out: list[Any] = []
    for result in results:
        if result:
            out.extend(result)
    return out


def _core_version() -> str:
    from chatcore import __version__

    return __version__


_host: PluginHost | None = None
_host_lock = threading.Lock()


def get_plugin_host() -> PluginHost:
    """The process-wide host, loaded from entry points on first use and then frozen."""
    global _host
    if _host is None:
        with _host_lock:
            if _host is None:
                _host = PluginHost()
    return _host


def list_plugins() -> list[PluginRecord]:
    """Records of every installed plugin: name, distribution, version, hooks, providers,
    and the error of any that failed to load."""
    return get_plugin_host().records()
