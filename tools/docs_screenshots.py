"""Look at the built docs site in a real browser: headless Chromium screenshots of chosen
pages at desktop and phone widths, and a layout report from the rendered pages.

Not part of ``make test`` (CI has no Chromium); run it after changing the theme, the CSS or
a page's layout, and look at the screenshots::

    pip install -e ".[docs]"; apt-get install chromium
    python tools/docs_screenshots.py                 # builds the site, checks the default pages
    python tools/docs_screenshots.py --all           # every page
    python tools/docs_screenshots.py index reference/client --out /tmp/shots

The site is built with ``mkdocs build --strict`` into a temporary directory (``--site DIR``
uses a built one), served from 127.0.0.1 on a free port, and each page is loaded with a
small script added to it that reports, at that width:

- code blocks wider than the content column (at the desktop width; a phone scrolls them);
- inline code wrapped in the middle of a name (``OPENAI_API_KEY`` on two lines; a break at a
  space or a hyphen is allowed), or cut off at the desktop width;
- a page wider than the window (the whole page scrolls sideways).

Screenshots go to ``--out`` (default ``build/screenshots/``) as ``<page>-<width>.png``. The
exit status is 1 when the report lists a problem.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: (name, width, height): a laptop, and a phone in portrait.
WIDTHS = [("desktop", 1280, 2000), ("phone", 390, 2400)]
DEFAULT_PAGES = [
    "index",
    "quickstart",
    "configuration",
    "benchmarks",
    "plugin-tutorial",
    "api",
    "reference/client",
    "reference/provider",
]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
]
REPORT_ID = "chatcore-layout-report"
#: Runs in the page once it has loaded; writes its findings into a <pre> that --dump-dom shows.
CHECK_SCRIPT = """
<script>
window.addEventListener("load", () => setTimeout(() => {
  const found = [];
  const content = document.querySelector(".md-content") || document.body;
  const desktop = window.innerWidth >= 1000;
  for (const pre of content.querySelectorAll("pre")) {
    const code = pre.querySelector("code") || pre;
    if (desktop && code.scrollWidth > code.clientWidth + 1) {
      const first = (pre.innerText.split("\\n").find((l) => l.trim()) || "").slice(0, 60);
      const widths = `${code.scrollWidth} > ${code.clientWidth} px`;
      found.push(`code block wider than the column (${widths}): ${first}`);
    }
  }
  for (const code of content.querySelectorAll("code")) {
    if (code.closest("pre")) continue;
    const text = code.textContent;
    if (!/[\\s-]/.test(text) && code.getClientRects().length > 1) {
      // a break is avoidable when the name fits on a line of its container by itself
      const probe = code.cloneNode(true);
      probe.style.whiteSpace = "nowrap";
      probe.style.position = "absolute";
      code.parentElement.appendChild(probe);
      const needed = probe.getBoundingClientRect().width;
      probe.remove();
      const box = code.closest("p, li, td, th, dd, div") || content;
      if (needed <= box.clientWidth) {
        found.push(`inline code wrapped mid-word: ${text}`);
      }
    }

  }
  const wide = document.documentElement.scrollWidth;
  if (wide > window.innerWidth + 1) {
    found.push(`page wider than the window (${wide} > ${window.innerWidth} px)`);
  }
  const out = document.createElement("pre");
  out.id = "REPORT_ID";
  out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
}, 300));
</script>
""".replace("REPORT_ID", REPORT_ID)


def build_site(dest: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(dest)],
        cwd=ROOT,
        check=True,
    )


def instrument(site: Path, dest: Path) -> None:
    """Copy ``site`` to ``dest`` with the check script added to every page."""
    shutil.copytree(site, dest)
    for page in dest.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        page.write_text(text.replace("</body>", CHECK_SCRIPT + "</body>", 1), encoding="utf-8")


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (a free port) for the duration: the base URL."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    sys.exit("no Chromium found: apt-get install chromium")


def run_chromium(args: list[str], profile: Path) -> str:
    proc = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc.stdout


def check_page(url: str, width: int, height: int, shot: Path, profile: Path) -> list[str]:
    """Screenshot ``url`` at ``width`` x ``height`` into ``shot``: the layout report."""
    size = f"--window-size={width},{height}"
    run_chromium([size, f"--screenshot={shot}", "--virtual-time-budget=3000", url], profile)
    dom = run_chromium([size, "--dump-dom", "--virtual-time-budget=3000", url], profile)
    match = re.search(rf'<pre id="{REPORT_ID}">(.*?)</pre>', dom, re.S)
    if match is None:
        return ["the layout report did not appear (the page did not finish loading?)"]
    found: list[str] = json.loads(html.unescape(match.group(1)))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="*", help="pages, as docs/ paths without .md")
    parser.add_argument("--all", action="store_true", help="every page of the site")
    parser.add_argument("--site", type=Path, help="a built site (default: build one)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "screenshots")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    problems = 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        site = args.site
        if site is None:
            site = work / "built"
            build_site(site)
        instrument(site, work / "site")
        if args.all:
            docs = ROOT / "docs"
            pages = sorted(str(p.relative_to(docs).with_suffix("")) for p in docs.rglob("*.md"))
        else:
            pages = args.pages or DEFAULT_PAGES
        with serve(work / "site") as base:
            for page in pages:
                path = "" if page == "index" else page.removesuffix("/index") + "/"
                for label, width, height in WIDTHS:
                    shot = args.out / f"{page.replace('/', '-')}-{label}.png"
                    found = check_page(base + path, width, height, shot, work / "profile")
                    status = "ok" if not found else f"{len(found)} problem(s)"
                    print(f"{page} at {width}px: {status} ({shot})")
                    for item in found:
                        print(f"    {item}")
                    problems += len(found)
    print(f"{problems} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
