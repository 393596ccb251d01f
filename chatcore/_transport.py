"""The HTTP transport every provider talks through: one pooled ``requests.Session`` per
provider instance, timeouts that never wait forever, a chatcore User-Agent, and the one
place where HTTP failures become typed chatcore errors."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs
import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from chatcore import __version__
from chatcore._deadline import call_deadline
from chatcore._sse import SSEEvent, iter_sse
from chatcore.exceptions import (
    APIError,
    APITimeoutError,
    ResponseDecodeError,
    error_from_requests_exception,
    error_from_response,
    request_id_from,
)

_PY = platform.python_version()


@attrs.frozen
class HttpResult:
    """A successful (2xx) answer: status, headers, decoded JSON, timing, request id."""

    status_code: int
    headers: Mapping[str, str]
    data: Any
    elapsed: float
    request_id: str | None


def _dumps(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class HttpTransport:
    """JSON over HTTP for one provider instance; thread-safe (``requests.Session`` with a
    pooled ``HTTPAdapter``). Errors are raised as :mod:`chatcore.exceptions` classes."""

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
        timeout: float = 600.0,
        connect_timeout: float = 5.0,
        pool_maxsize: int = 32,
        user_agent_product: tuple[str, str] | None = None,
        chunk_timeout: float = 60.0,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.secrets = tuple(s for s in secrets if s)
        self.timeout = (connect_timeout, timeout)
        self.chunk_timeout = chunk_timeout
        self.params = dict(params or {})
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_maxsize, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        ua = f"chatcore/{__version__}"
        if user_agent_product and user_agent_product[0]:
            ua += f" {user_agent_product[0]}/{user_agent_product[1] or 'unknown'}"
        ua += f" python/{_PY}"
        session.headers.update(
            {"User-Agent": ua, "Accept": "application/json", "Content-Type": "application/json"}
        )
        if headers:
            session.headers.update(headers)
        self.session = session
        self._templates: dict[tuple[Any, ...], requests.PreparedRequest] = {}
        self._env_settings: dict[tuple[str, str], dict[str, Any]] = {}

    @property
    def user_agent(self) -> str:
        """The User-Agent header sent with every request."""
        return str(self.session.headers["User-Agent"])

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` (already absolute URLs are kept)."""
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        model: str | None = None,
        timeout: float | None = None,
    ) -> HttpResult:
        """Send one request and return the decoded JSON answer, or raise a typed error."""
        response = self._send(method, path, json_body, params, headers, model, timeout, False)
        try:
            content = response.content
        except requests.RequestException as exc:
            raise self._map(exc, model) from exc
        finally:
            response.close()
        elapsed = response.elapsed.total_seconds()
        request_id = request_id_from(response.headers)
        if not content:
            data: Any = None
        else:
            try:
                data = json.loads(content)
            except ValueError as exc:
                raise ResponseDecodeError(
                    f"expected JSON from {method} {path}, got "
                    f"{response.headers.get('content-type', 'no content type')}: "
                    f"{content[:200].decode('utf-8', 'replace')!r}",
                    provider=self.provider,
                    model=model,
                    status_code=response.status_code,
                    request_id=request_id,
                    secrets=self.secrets,
                ) from exc
        return HttpResult(response.status_code, response.headers, data, elapsed, request_id)

    def stream_events(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        model: str | None = None,
        on_open: Callable[[requests.Response], None] | None = None,
    ) -> Generator[SSEEvent, None, None]:
        """Open a streaming request and yield its Server-Sent Events, lazily: nothing is
        sent until the first ``next()``. An error status raises the typed error before any
        event; the read timeout between chunks is ``chunk_timeout``. Closing the generator
        releases the connection."""
        response = self._send(
            method, path, json_body, params, headers, model, self.chunk_timeout, True
        )
        if on_open is not None:
            on_open(response)
        try:
            yield from iter_sse(response.iter_content(chunk_size=None))
        except requests.RequestException as exc:
            raise self._map(exc, model) from exc
        finally:
            response.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()

    # ----------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        json_body: Any,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        model: str | None,
        timeout: float | None,
        stream: bool,
    ) -> requests.Response:
        query = self.params
        if params:
            query = {**self.params, **params}
        data = _dumps(json_body) if json_body is not None else None
        to = self.timeout if timeout is None else (min(self.timeout[0], timeout), timeout)
        deadline = call_deadline.get()
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise APITimeoutError(
                    "the call's total deadline (timeout_total) passed before this attempt",
                    provider=self.provider,
                    model=model,
                )
            to = (min(to[0], remaining), min(to[1], remaining))
        started = time.perf_counter()
        try:
            prepared = self._prepare(method, self.url(path), query, data, headers)
            response = self.session.send(
                prepared,
                timeout=to,
                allow_redirects=True,
                **self._environment(prepared.url or ""),
                stream=stream,
            )
        except requests.RequestException as exc:
            raise self._map(exc, model) from exc
        if response.status_code >= 400:
            try:
                body = response.content
            except requests.RequestException:
                body = b""
            finally:
                response.close()
            error = error_from_response(
                response.status_code,
                body,
                CaseInsensitiveDict(response.headers),
                provider=self.provider,
                model=model,
                secrets=self.secrets,
            )
            error.latency = time.perf_counter() - started  # type: ignore[attr-defined]
            raise error
        return response

    def _prepare(
        self,
        method: str,
        url: str,
        query: Mapping[str, str] | None,
        data: bytes | None,
        headers: Mapping[str, str] | None,
    ) -> requests.PreparedRequest:
        """A prepared request from a per-(method, URL, query) template: what
        ``Session.prepare_request`` does on every call (merging the session's headers,
        parsing and encoding the URL) is done once. The template holds the session headers
        as they were when it was built; cookies the server set are added per request."""
        key = (method, url, tuple(sorted(query.items())) if query else ())
        template = self._templates.get(key)
        if template is None:
            template = requests.PreparedRequest()
            template.prepare(
                method=method,
                url=url,
                headers=dict(self.session.headers),
                params=dict(query) if query else None,
                hooks=self.session.hooks,
            )
            if len(self._templates) < 64:  # a few routes per provider; never unbounded
                self._templates[key] = template
        prepared = template.copy()
        if data is not None:
            prepared.body = data
            prepared.headers["Content-Length"] = str(len(data))
        if headers:
            prepared.headers.update(headers)
        if self.session.cookies:
            prepared.prepare_cookies(self.session.cookies)
        return prepared

    def _environment(self, url: str) -> dict[str, Any]:
        """Proxies, ``verify`` and ``cert`` from the session and the environment
        (``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``...), resolved once per host
        instead of on every request as ``Session.request`` does."""
        parts = urlsplit(url)
        host = (parts.scheme, parts.netloc)
        cached = self._env_settings.get(host)
        if cached is not None:
            return cached
        found: dict[str, Any] = dict(
            self.session.merge_environment_settings(url, {}, None, None, None)
        )
        found.pop("stream", None)
        if len(self._env_settings) < 64:
            self._env_settings[host] = found
        return found

    def _map(self, exc: requests.RequestException, model: str | None) -> APIError:
        return error_from_requests_exception(
            exc, provider=self.provider, model=model, secrets=self.secrets
        )
