"""Health checks over real HTTP: liveness, readiness probes, caching, single-flight probes,
the ``/livez`` ``/readyz`` ``/metrics`` server, and redaction of provider errors."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

import chatcore
from chatcore._health import (
    METRICS_CONTENT_TYPE,
    HealthChecker,
    HealthReport,
    HealthServer,
    ProviderHealth,
    client_metrics,
    render_health,
)
from chatcore._plugins import PluginHost, PluginWarning
from chatcore.exceptions import ConfigurationError
from chatcore.provider import Option, ProviderSpec
from chatcore.testing.server import Reply, StandInServer

from .conftest import TEST_KEY, WirePlugin, WireProvider, no_sleep

MODELS = "/v1/models"


class SecondPlugin:
    """Offers ``wire2`` (same wire format; its key comes from ``WIRE2_API_KEY``)."""

    @chatcore.hookimpl
    def chatcore_providers(self) -> list[ProviderSpec]:
        return [
            ProviderSpec(
                name="wire2",
                factory=WireProvider,
                options={
                    "api_key": Option(secret=True, env=("WIRE2_API_KEY",)),
                    "base_url": Option(default="http://127.0.0.1:9/v1", env=("WIRE2_BASE_URL",)),
                },
                capabilities={"chat", "models"},
            )
        ]


class NoModelsProvider(WireProvider):
    def list_models(self) -> Any:
        raise NotImplementedError("no model listing")


class NoModelsPlugin:
    @chatcore.hookimpl
    def chatcore_providers(self) -> list[ProviderSpec]:
        return [ProviderSpec(name="nomodels", factory=NoModelsProvider, capabilities={"chat"})]


class BogusPlugin:
    """Implements a hook that does not exist: fails to load (with a PluginWarning)."""

    @chatcore.hookimpl
    def chatcore_bogus(self) -> None:
        return None


@pytest.fixture
def build() -> Iterator[Any]:
    """Build a client from explicit plugins (no entry points, empty environment)."""
    clients: list[chatcore.Client] = []

    def make(
        *plugins: Any,
        providers: dict[str, dict[str, Any]] | None = None,
        environ: dict[str, str] | None = None,
    ) -> chatcore.Client:
        host = PluginHost(load_entry_points=False, plugins=list(plugins), environ={})
        client = chatcore.Client(
            plugin_host=host,
            providers=providers,
            environ=environ or {},
            retry=chatcore.RetryPolicy(sleep=no_sleep),
        )
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start a HealthServer on 127.0.0.1, port 0; stopped after the test."""
    servers: list[HealthServer] = []

    def start(checker: HealthChecker, **kwargs: Any) -> HealthServer:
        srv = HealthServer(checker, "127.0.0.1", 0, **kwargs).start()
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.stop()


def fetch(srv: HealthServer, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=15)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def get_json(srv: HealthServer, path: str) -> tuple[int, Any]:
    status, headers, body = fetch(srv, path)
    assert headers["content-type"] == "application/json"
    return status, json.loads(body)


def probes(server: StandInServer) -> int:
    return sum(1 for r in server.requests if r.path == MODELS)


# --- readiness ---------------------------------------------------------------------------


def test_ok_provider_is_ready_over_http(make_client, server, serve):
    checker = HealthChecker(make_client())
    srv = serve(checker)
    status, body = get_json(srv, "/readyz")
    assert status == 200
    assert body["status"] == "ok"
    assert body["ready"] is True and body["live"] is True
    [wire] = body["providers"]
    assert wire["name"] == "wire" and wire["status"] == "ok" and wire["error"] is None
    assert wire["latency"] is not None and wire["latency"] >= 0
    assert "details" not in body
    assert probes(server) == 1
    # the probe is authenticated with the configured key and sent once (no retries)
    assert server.requests[-1].header("authorization") == f"Bearer {TEST_KEY}"


def test_verbose_readyz_has_details(make_client, serve):
    srv = serve(HealthChecker(make_client()))
    status, body = get_json(srv, "/readyz?verbose")
    assert status == 200
    assert body["details"]["providers_installed"] == ["wire"]
    assert body["details"]["providers_configured"] == ["wire"]
    assert body["details"]["plugin_errors"] == []
    assert body["details"]["config_problems"] == []
    assert isinstance(body["checked_at"], float)


def test_wrong_key_401_is_not_ready_and_redacted(make_client, server, serve):
    wrong = "sk-wrongSECRETkey0123456789abcd"
    client = make_client(providers={"wire": {"api_key": wrong, "base_url": server.base_url}})
    srv = serve(HealthChecker(client))
    status, _, raw = fetch(srv, "/readyz?verbose")
    assert status == 503
    body = json.loads(raw)
    assert body["ready"] is False and body["status"] == "down"
    [wire] = body["providers"]
    assert wire["status"] == "error"
    assert wire["error"].startswith("AuthenticationError: ")
    assert "401" in wire["error"]
    assert wrong.encode() not in raw
    assert TEST_KEY.encode() not in raw


def test_error_echoing_the_key_is_redacted(make_client, server, serve):
    # the server echoes the full key in its error message: it must never reach the report
    server.enqueue(
        Reply.error(401, f"Incorrect API key provided: {TEST_KEY} (Bearer {TEST_KEY})"),
        path=MODELS,
    )
    srv = serve(HealthChecker(make_client()))
    status, _, raw = fetch(srv, "/readyz?verbose")
    assert status == 503
    assert TEST_KEY.encode() not in raw
    assert TEST_KEY[:12].encode() not in raw
    wire = json.loads(raw)["providers"][0]
    assert wire["error"].startswith("AuthenticationError: ")
    assert "***" in wire["error"]


def test_server_error_500_is_not_ready(make_client, server, serve):
    server.enqueue(Reply.error(500, "The server had an error processing your request"), path=MODELS)
    srv = serve(HealthChecker(make_client()))
    status, body = get_json(srv, "/readyz")
    assert status == 503
    assert body["providers"][0]["status"] == "error"
    assert body["providers"][0]["error"].startswith("ServerError: ")
    assert "processing your request" in body["providers"][0]["error"]
    assert probes(server) == 1  # one attempt: the retry policy is not involved


def test_hanging_provider_times_out_within_the_probe_timeout(make_client, server, serve):
    server.enqueue(Reply.hang(10), path=MODELS)
    checker = HealthChecker(make_client(), timeout=0.5)
    srv = serve(checker)
    started = time.monotonic()
    status, body = get_json(srv, "/readyz")
    elapsed = time.monotonic() - started
    assert status == 503
    wire = body["providers"][0]
    assert wire["status"] == "error"
    assert "Timeout" in wire["error"]
    assert 0.4 <= wire["latency"] < 3.0
    assert elapsed < 3.0  # generous bound; the probe is cut at 0.5 s


def test_probes_run_in_parallel(build, serve):
    with StandInServer(api_key=TEST_KEY) as a, StandInServer(api_key=TEST_KEY) as b:
        a.enqueue(Reply.hang(10), path=MODELS)
        b.enqueue(Reply.hang(10), path=MODELS)
        client = build(
            WirePlugin(),
            SecondPlugin(),
            providers={
                "wire": {"api_key": TEST_KEY, "base_url": a.base_url},
                "wire2": {"api_key": TEST_KEY, "base_url": b.base_url},
            },
        )
        checker = HealthChecker(client, timeout=1.0)
        started = time.monotonic()
        report = checker.readiness()
        elapsed = time.monotonic() - started
        assert [p.status for p in report.providers] == ["error", "error"]
        assert elapsed < 1.9  # about one timeout; one after the other would take 2 s
        checker.close()


class StuckProvider(WireProvider):
    """Ignores the call deadline entirely (a plugin bug): the caller must not wait forever."""

    release = threading.Event()

    def list_models(self) -> Any:
        self.release.wait(10)
        return []


class StuckPlugin:
    @chatcore.hookimpl
    def chatcore_providers(self) -> list[ProviderSpec]:
        return [ProviderSpec(name="stuck", factory=StuckProvider, capabilities={"chat", "models"})]


def test_probe_ignoring_the_deadline_is_abandoned(build, server):
    client = build(
        StuckPlugin(), providers={"stuck": {"api_key": TEST_KEY, "base_url": server.base_url}}
    )
    checker = HealthChecker(client, timeout=0.3)
    try:
        started = time.monotonic()
        report = checker.readiness()
        assert time.monotonic() - started < 3.0
        assert report.providers[0].status == "error"
        assert "did not finish within 0.3s" in (report.providers[0].error or "")
        # the stuck probe is still in flight: the next caller joins it instead of piling up
        assert len(checker._inflight) == 1
        checker.readiness()
        assert len(checker._inflight) == 1
    finally:
        StuckProvider.release.set()
        checker.close()


def test_results_are_cached_for_ttl(make_client, server):
    now = [1000.0]
    checker = HealthChecker(make_client(), ttl=10.0, clock=lambda: now[0])
    first = checker.readiness()
    second = checker.readiness()
    assert probes(server) == 1
    assert first.providers[0].cached is False
    assert second.providers[0].cached is True
    assert second.providers[0].status == "ok"
    now[0] += 9.9
    assert checker.readiness().providers[0].cached is True
    assert probes(server) == 1
    now[0] += 0.2  # past the ttl
    third = checker.readiness()
    assert third.providers[0].cached is False
    assert probes(server) == 2
    checker.readiness(refresh=True)
    assert probes(server) == 3
    checker.invalidate()
    checker.readiness()
    assert probes(server) == 4
    checker.close()


def test_errors_are_cached_too(make_client, server):
    server.enqueue(Reply.error(500, "boom"), path=MODELS)
    checker = HealthChecker(make_client(), clock=lambda: 0.0)
    assert checker.readiness().ready is False
    report = checker.readiness()
    assert report.ready is False and report.providers[0].cached is True
    assert probes(server) == 1
    checker.close()


def test_concurrent_callers_share_one_probe(make_client, server):
    server.enqueue(Reply.hang(1.0), path=MODELS)  # then the default model list
    checker = HealthChecker(make_client(), ttl=0.0)  # no cache: only sharing can explain 1
    barrier = threading.Barrier(6)
    reports: list[HealthReport] = []
    lock = threading.Lock()

    def check() -> None:
        barrier.wait()
        report = checker.readiness()
        with lock:
            reports.append(report)

    threads = [threading.Thread(target=check) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(reports) == 6
    assert all(r.ready for r in reports)
    assert probes(server) == 1
    checker.close()


# --- configured / unconfigured -----------------------------------------------------------


def test_unconfigured_provider_only_is_not_ready(build, serve):
    client = build(WirePlugin())  # wire installed, no key anywhere
    checker = HealthChecker(client)
    report = checker.readiness()
    [wire] = report.providers
    assert wire.status == "unconfigured"
    assert wire.error is not None and "WIRE_API_KEY" in wire.error
    assert report.live is True
    assert report.ready is False and report.status == "down"
    srv = serve(checker)
    assert get_json(srv, "/readyz")[0] == 503
    assert get_json(srv, "/livez") == (200, {"status": "ok"})


def test_provider_configured_from_environment_is_probed(build, server):
    client = build(
        WirePlugin(), environ={"WIRE_API_KEY": TEST_KEY, "WIRE_BASE_URL": server.base_url}
    )
    report = HealthChecker(client).readiness()
    assert report.ready is True
    assert report.providers[0].status == "ok"
    assert probes(server) == 1


def test_unconfigured_provider_does_not_make_service_unready(build, server):
    client = build(
        WirePlugin(),
        SecondPlugin(),
        providers={"wire": {"api_key": TEST_KEY, "base_url": server.base_url}},
    )
    report = HealthChecker(client).readiness()
    assert {p.name: p.status for p in report.providers} == {
        "wire": "ok",
        "wire2": "unconfigured",
    }
    assert report.ready is True and report.status == "ok"


def test_explicitly_configured_provider_missing_key_is_an_error(build, server, serve):
    client = build(WirePlugin(), providers={"wire": {"base_url": server.base_url}})
    checker = HealthChecker(client)
    live, details = checker.liveness()
    assert live is False
    assert any("WIRE_API_KEY" in p for p in details["config_problems"])
    report = checker.readiness()
    assert report.providers[0].status == "error"
    assert report.providers[0].error.startswith("ConfigurationError: ")
    assert report.ready is False and report.live is False
    srv = serve(checker)
    status, body = get_json(srv, "/livez")
    assert status == 503
    assert body["status"] == "down" and body["problems"]
    assert probes(server) == 0


def test_configured_but_not_installed_provider(build, server):
    client = build(
        WirePlugin(), providers={"wire": {"api_key": TEST_KEY, "base_url": server.base_url}}
    )
    # Client() itself refuses unknown provider names; a plugin host whose plugin went away
    # (or a client built without that check) still must not look healthy
    client._provider_settings["nope"] = {"api_key": "sk-nopeSECRET0123456789"}
    checker = HealthChecker(client)
    live, details = checker.liveness()
    assert live is False
    assert "'nope' is configured but no installed plugin" in details["config_problems"][0]
    report = checker.readiness()
    assert report.provider("nope") is not None
    assert report.provider("nope").status == "error"  # type: ignore[union-attr]
    assert report.provider("wire").status == "ok"  # type: ignore[union-attr]
    assert report.ready is False and report.status == "degraded"
    assert "sk-nopeSECRET" not in json.dumps(report.to_dict())


def test_selected_providers_and_unknown_name(make_client, server):
    checker = HealthChecker(make_client())
    report = checker.readiness(["wire", "missing", "wire"])
    assert [p.name for p in report.providers] == ["wire", "missing"]
    assert report.provider("missing").status == "error"  # type: ignore[union-attr]
    assert "ProviderNotFoundError" in report.provider("missing").error  # type: ignore[union-attr,operator]
    assert report.ready is False


def test_provider_without_model_listing_is_skipped(build, server):
    client = build(
        NoModelsPlugin(),
        providers={"nomodels": {"api_key": TEST_KEY, "base_url": server.base_url}},
    )
    report = HealthChecker(client).readiness()
    assert report.providers[0].status == "skipped"
    assert report.providers[0].latency is None
    assert report.ready is True
    assert probes(server) == 0


def test_plugin_load_failure_is_detail_not_death(server):
    with pytest.warns(PluginWarning):
        host = PluginHost(load_entry_points=False, plugins=[WirePlugin(), BogusPlugin()])
    with chatcore.Client(
        plugin_host=host,
        providers={"wire": {"api_key": TEST_KEY, "base_url": server.base_url}},
        environ={},
    ) as client:
        checker = HealthChecker(client)
        live, details = checker.liveness()
        assert live is True
        [failed] = details["plugin_errors"]
        assert "chatcore_bogus" in failed["error"]
        report = checker.readiness()
        assert report.ready is True
        assert "failed to load" in render_health(report)


def test_liveness_makes_no_network_call(make_client, server):
    checker = HealthChecker(make_client())
    assert checker.liveness()[0] is True
    assert server.requests == []


def test_bad_checker_settings():
    with pytest.raises(ConfigurationError, match="timeout"):
        HealthChecker(None, timeout=0)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="ttl"):
        HealthChecker(None, ttl=-1)  # type: ignore[arg-type]


# --- server ------------------------------------------------------------------------------


def test_livez_ok_and_head(make_client, serve):
    srv = serve(HealthChecker(make_client()))
    assert get_json(srv, "/livez") == (200, {"status": "ok"})
    status, body = get_json(srv, "/livez?verbose=1")
    assert status == 200 and body["details"]["providers_installed"] == ["wire"]
    status, headers, raw = fetch(srv, "/livez", method="HEAD")
    assert status == 200 and raw == b""
    assert int(headers["content-length"]) > 0
    status, headers, raw = fetch(srv, "/readyz", method="HEAD")
    assert status == 200 and raw == b""


def test_not_found_and_method_not_allowed(make_client, serve):
    srv = serve(HealthChecker(make_client()))
    status, body = get_json(srv, "/nope")
    assert status == 404 and body["status"] == "error"
    status, headers, _ = fetch(srv, "/readyz", method="POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"


def test_metrics_endpoint(make_client, serve):
    checker = HealthChecker(make_client())
    text = '# TYPE chatcore_requests_total counter\nchatcore_requests_total{provider="wire"} 3\n'
    srv = serve(checker, metrics=lambda: text)
    status, headers, body = fetch(srv, "/metrics")
    assert status == 200
    assert headers["content-type"] == METRICS_CONTENT_TYPE
    assert body.decode() == text

    srv = serve(checker)  # no metrics source
    status, headers, body = fetch(srv, "/metrics")
    assert status == 503 and b"not available" in body


def test_metrics_from_a_client_object(make_client, serve):
    class FakeMetrics:
        def prometheus_text(self) -> str:
            return "chatcore_up 1\n"

    checker = HealthChecker(make_client())
    srv = serve(checker, metrics=client_metrics(SimpleNamespace(metrics=FakeMetrics())))
    status, _, body = fetch(srv, "/metrics")
    assert (status, body) == (200, b"chatcore_up 1\n")
    srv = serve(checker, metrics=client_metrics(SimpleNamespace()))  # not wired yet
    status, _, body = fetch(srv, "/metrics")
    assert status == 503 and b"LookupError" in body


def test_metrics_from_the_real_client(make_client, serve):
    client = make_client()
    client.chat("wire:gpt-4o-mini", "Hello")
    srv = serve(HealthChecker(client), metrics=client_metrics(client))
    status, headers, body = fetch(srv, "/metrics")
    if hasattr(client, "metrics"):
        assert status == 200
        assert headers["content-type"] == METRICS_CONTENT_TYPE
        assert body.decode() == client.metrics.prometheus_text()
    else:  # the aggregator is not wired in this build
        assert status == 503


def test_metrics_source_failing_gives_503(make_client, serve):
    def broken() -> str:
        raise RuntimeError("boom")

    srv = serve(HealthChecker(make_client()), metrics=broken)
    assert fetch(srv, "/metrics")[0] == 503


def test_non_loopback_bind_refused(make_client):
    checker = HealthChecker(make_client())
    for host in ("0.0.0.0", "192.0.2.10", "example.com", ""):
        with pytest.raises(ConfigurationError, match="non-loopback"):
            HealthServer(checker, host, 0)
    # allowed explicitly (not started: nothing is bound)
    HealthServer(checker, "0.0.0.0", 0, allow_non_loopback=True)
    HealthServer(checker, "localhost", 0)
    HealthServer(checker, "::1", 0)


def test_server_lifecycle(make_client):
    checker = HealthChecker(make_client())
    with HealthServer(checker, port=0) as srv:
        assert srv.running and srv.port != 0
        assert srv.url == f"http://127.0.0.1:{srv.port}"
        assert srv.start() is srv  # idempotent
        assert fetch(srv, "/livez")[0] == 200
        port = srv.port
    assert not srv.running
    srv.stop()  # idempotent
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        with pytest.raises(OSError):  # the port is closed
            conn.request("GET", "/livez")
    finally:
        conn.close()


def test_port_in_use_is_a_configuration_error(make_client):
    checker = HealthChecker(make_client())
    with (
        HealthServer(checker, port=0) as first,
        pytest.raises(ConfigurationError, match="cannot serve"),
    ):
        HealthServer(checker, port=first.port).start()


# --- report and rendering ----------------------------------------------------------------


def test_report_to_dict_is_json_ready(make_client):
    report = HealthChecker(make_client()).readiness()
    data = json.loads(json.dumps(report.to_dict()))
    assert data["status"] == "ok"
    assert set(data) == {"status", "live", "ready", "providers", "details", "checked_at"}
    assert set(report.to_dict(verbose=False)) == {"status", "live", "ready", "providers"}


def test_render_health_table():
    report = HealthReport(
        live=True,
        ready=False,
        status="degraded",
        providers=(
            ProviderHealth("openai", "ok", latency=0.1234),
            ProviderHealth("huggingface", "error", latency=2.0, error="APITimeoutError: x"),
            ProviderHealth("azure", "unconfigured", error="ConfigurationError: y"),
        ),
    )
    text = render_health(report)
    lines = text.splitlines()
    assert lines[0].split() == ["PROVIDER", "STATUS", "LATENCY", "(ms)", "ERROR"]
    assert lines[2].split()[:3] == ["openai", "ok", "123"]
    assert "APITimeoutError: x" in lines[3]
    assert lines[4].split()[:3] == ["azure", "unconfigured", "-"]
    assert lines[-1] == "status: degraded (live: yes, ready: no)"
    empty = render_health(HealthReport(live=True, ready=False, status="down"))
    assert "no providers" in empty
