"""Start the benchmark server: nginx with its echo module when the system has both, else
the standard-library asyncio server in ``_stdlib_server.py``. Either runs in its own
process, binds 127.0.0.1 on a free port, keeps connections alive and answers with fixed
bytes:

* ``POST /v1/chat/completions``: a fixed ``chat.completion`` JSON (597 bytes);
* ``POST /stream/v1/chat/completions``: a fixed SSE body (23 events and ``[DONE]``),
  sent with ``Content-Length`` in one piece (client-side parsing cost, no pacing);
* ``POST /chunked/v1/chat/completions``: the same events, each sent as its own HTTP chunk
  (``Transfer-Encoding: chunked``, flushed one event at a time; nginx: ``echo`` +
  ``echo_flush`` per event);
* ``POST /slow/v1/chat/completions``: the chat JSON after 0.3 s (nginx: ``echo_sleep``);
* ``POST /slowstream/v1/chat/completions``: the stream, one chunk per event, its 20
  content chunks 20 ms apart (0.4 s a stream).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import payloads

HERE = Path(__file__).resolve().parent

ECHO_MODULE_PATHS = (
    "/usr/lib/nginx/modules/ngx_http_echo_module.so",
    "/usr/share/nginx/modules/ngx_http_echo_module.so",
    "/usr/lib64/nginx/modules/ngx_http_echo_module.so",
    "/usr/local/nginx/modules/ngx_http_echo_module.so",
)

NGINX_CONF = """\
load_module {echo_module};
worker_processes 1;
worker_rlimit_nofile 16384;
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log error;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    tcp_nodelay on;
    server_tokens off;
    etag off;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {tmp}/www;
        # a POST to a static file answers 405: serve the file with 200 instead
        error_page 405 =200 $uri;
        location /v1/ {{
            default_type application/json;
            add_header x-request-id {request_id} always;
        }}
        location /stream/ {{
            default_type text/event-stream;
            add_header x-request-id {request_id} always;
        }}
        # echo module locations (echo ignores the request body: nginx discards it)
        location = {chunked_path} {{
            default_type text/event-stream;
            add_header x-request-id {request_id} always;
{chunked_body}
        }}
        location = {slow_path} {{
            default_type application/json;
            add_header x-request-id {request_id} always;
            echo_sleep {slow_delay};
            echo -n '{chat_text}';
        }}
        location = {slow_stream_path} {{
            default_type text/event-stream;
            add_header x-request-id {request_id} always;
{slow_stream_body}
        }}
    }}
}}
"""


def _echo_literal(data: bytes) -> str:
    """``data`` as a single-quoted nginx string (newlines as ``\\n``; the payloads hold no
    quote, backslash or ``$``)."""
    text = data.decode()
    if any(c in text for c in "'\\$"):
        raise ValueError("payload not servable by the echo module as is")
    return "'" + text.replace("\n", "\\n") + "'"


def _echo_frames(frames: list[bytes], gaps: list[float] | None = None) -> str:
    """nginx echo directives sending each frame as its own chunk (``echo_flush`` after
    each), sleeping ``gaps[i]`` seconds before frame ``i``."""
    lines = []
    for i, frame in enumerate(frames):
        if gaps and gaps[i] > 0:
            lines.append(f"            echo_sleep {gaps[i]:g};")
        lines.append(f"            echo -n {_echo_literal(frame)};")
        lines.append("            echo_flush;")
    return "\n".join(lines)


def find_echo_module() -> str | None:
    for candidate in ECHO_MODULE_PATHS:
        if os.path.exists(candidate):
            return candidate
    return None


def find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"server did not listen on 127.0.0.1:{port} within {timeout}s")


def _all_cpus() -> set[int]:
    return set(range(os.cpu_count() or 1))


def _stdlib_routes() -> list[dict]:
    """What ``_stdlib_server.py`` serves: path prefix, content type, frames (each written
    on its own; ``chunked``: as HTTP chunks) and the seconds to wait before each."""
    chat = payloads.chat_body().decode()
    frames = [f.decode() for f in payloads.sse_frames()]
    n = len(frames)
    return [
        {
            "prefix": payloads.STREAM_PREFIX,
            "type": "text/event-stream",
            "chunked": False,
            "frames": ["".join(frames)],
            "gaps": [0.0],
        },
        {
            "prefix": payloads.CHUNKED_PREFIX,
            "type": "text/event-stream",
            "chunked": True,
            "frames": frames,
            "gaps": [0.0] * n,
        },
        {
            "prefix": payloads.SLOW_STREAM_PREFIX,
            "type": "text/event-stream",
            "chunked": True,
            "frames": frames,
            "gaps": payloads.slow_stream_gaps(),
        },
        {
            "prefix": payloads.SLOW_PREFIX,
            "type": "application/json",
            "chunked": False,
            "frames": [chat],
            "gaps": [payloads.SLOW_CHAT_DELAY],
        },
        {
            "prefix": payloads.CHAT_PREFIX,
            "type": "application/json",
            "chunked": False,
            "frames": [chat],
            "gaps": [0.0],
        },
    ]


class BenchServer:
    """``with BenchServer() as srv:`` gives ``srv.base_url``, ``srv.stream_base_url``,
    ``srv.kind`` (``"nginx"`` or ``"stdlib-asyncio"``) and ``srv.description``."""

    def __init__(self, prefer: str = "auto") -> None:
        if prefer not in ("auto", "nginx", "stdlib"):
            raise ValueError(f"prefer={prefer!r}")
        self.prefer = prefer
        self.kind = ""
        self.description = ""
        self.port = 0
        self.note = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{payloads.CHAT_PREFIX}"

    @property
    def stream_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{payloads.STREAM_PREFIX}"

    def stream_url(self, route: str) -> str:
        """The base URL (``.../v1``) of a stream route of ``payloads.STREAM_ROUTES``."""
        return f"http://127.0.0.1:{self.port}{payloads.STREAM_ROUTES[route]}"

    @property
    def slow_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{payloads.SLOW_PREFIX}"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def pin(self, cpus: set[int] | None) -> bool:
        """Restrict the server process to ``cpus`` (``None``: every usable core)."""
        if self._proc is None or not hasattr(os, "sched_setaffinity"):
            return False
        try:
            os.sched_setaffinity(self._proc.pid, cpus or _all_cpus())
            return True
        except OSError:
            return False

    def __enter__(self) -> BenchServer:
        self._tmp = tempfile.TemporaryDirectory(prefix="chatcore-bench-")
        tmp = Path(self._tmp.name)
        nginx = find_nginx() if self.prefer in ("auto", "nginx") else None
        if self.prefer == "nginx" and nginx is None:
            raise RuntimeError("--server nginx: nginx is not installed")
        if nginx is not None and find_echo_module() is None:
            if self.prefer == "nginx":
                raise RuntimeError(
                    "--server nginx: the nginx echo module (ngx_http_echo_module.so) is not "
                    "installed (Debian: libnginx-mod-http-echo)"
                )
            self.note = f"nginx found at {nginx} but not its echo module; "
            nginx = None
        if nginx is not None:
            try:
                self._start_nginx(nginx, tmp)
                return self
            except Exception as exc:
                if self.prefer == "nginx":
                    raise
                self.note = f"nginx found at {nginx} but failed to start ({exc}); "
                self._stop()
        self._start_stdlib(tmp)
        return self

    def _start_nginx(self, nginx: str, tmp: Path) -> None:
        www = tmp / "www"
        (www / "v1" / "chat").mkdir(parents=True)
        (www / "stream" / "v1" / "chat").mkdir(parents=True)
        (www / "v1" / "chat" / "completions").write_bytes(payloads.chat_body())
        (www / "stream" / "v1" / "chat" / "completions").write_bytes(payloads.sse_body())
        self.port = _free_port()
        conf = tmp / "nginx.conf"
        route = "/chat/completions"
        conf.write_text(
            NGINX_CONF.format(
                tmp=tmp,
                port=self.port,
                request_id=payloads.REQUEST_ID,
                echo_module=find_echo_module(),
                chunked_path=payloads.CHUNKED_PREFIX + route,
                chunked_body=_echo_frames(payloads.sse_frames()),
                slow_path=payloads.SLOW_PREFIX + route,
                slow_delay=f"{payloads.SLOW_CHAT_DELAY:g}",
                chat_text=_echo_literal(payloads.chat_body())[1:-1],
                slow_stream_path=payloads.SLOW_STREAM_PREFIX + route,
                slow_stream_body=_echo_frames(payloads.sse_frames(), payloads.slow_stream_gaps()),
            )
        )
        version = subprocess.run(
            [nginx, "-v"], capture_output=True, text=True, check=False
        ).stderr.strip()
        self._proc = subprocess.Popen(
            [nginx, "-c", str(conf), "-p", str(tmp), "-e", str(tmp / "error.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _wait_listening(self.port, self._proc)
        self.kind = "nginx"
        self.description = (
            f"{version.replace('nginx version: ', '')} (1 worker, static files with "
            "`error_page 405 =200 $uri`, the echo module for the chunked and slow routes, "
            "keep-alive, access log off)"
        )

    def _start_stdlib(self, tmp: Path) -> None:
        spec = tmp / "routes.json"
        spec.write_text(json.dumps(_stdlib_routes()))
        self._proc = subprocess.Popen(
            [sys.executable, str(HERE / "_stdlib_server.py"), str(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().decode().strip()
        if not line.startswith("PORT "):
            err = self._proc.stderr.read().decode() if self._proc.stderr else ""
            raise RuntimeError(f"stdlib server failed to start: {line!r} {err}")
        self.port = int(line.split()[1])
        _wait_listening(self.port, self._proc)
        self.kind = "stdlib-asyncio"
        why = "nginx not found" if self.prefer == "auto" else "--server stdlib"
        self.description = (
            f"{self.note}standard-library asyncio Protocol server in its own process "
            f"(precomputed bytes, keep-alive; {why})"
        )

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (
            getattr(proc, "stdin", None),
            getattr(proc, "stdout", None),
            getattr(proc, "stderr", None),
        ):
            if stream is not None:
                stream.close()

    def __exit__(self, *exc: object) -> None:
        self._stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


if __name__ == "__main__":  # manual use: serve until Ctrl-C
    prefer = sys.argv[1] if len(sys.argv) > 1 else "auto"
    with BenchServer(prefer) as srv:
        print(srv.kind, srv.base_url, srv.stream_base_url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
