"""The broadcast editor's load time with a visual document of 20 blocks, in Chromium: from the
navigation's start to the visual editor being ready (mounted, its document loaded, the
performance mark "email-editor-ready" set by static/editor/editor.js).

    python -m convertkit.dev.devstack bench bench/editor_page.py [--repeat R] [--blocks N]
    (or: DATABASE_URL=... REDIS_URL=... DEBUG=true python bench/editor_page.py ...)

1. Creates its own database (convertkit_editor_page_bench beside the one in DATABASE_URL;
   dropped and recreated if it exists) and migrates it. No other database is touched.
2. Seeds an account, its owner and a draft broadcast whose body is a visual document of
   --blocks blocks (headings, paragraphs with marks and links, lists, a quote, images, buttons,
   spacers, dividers).
3. Serves the site from a thread (Django's WSGI handler, static files included) and opens the
   editor --repeat times in headless Chromium with a profile on disk (its HTTP and code caches
   kept as a returning creator's browser keeps them), after one warm-up load, two ways: from the broadcasts list in the same tab (as a
   creator opens an email), and in a new tab (which adds starting a renderer process). Reads
   the mark's startTime (ms since the navigation started) and, for reference, when the page's
   HTML had arrived (responseEnd: the server's part, the live preview's rendering included)
   and when editor.js had arrived.
4. Drops its database (unless --keep) and prints p50/p95 and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pages import bench_database_url, database_recreate, percentile  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
READY_JS = """() => new Promise(resolve => {
  const done = () => {
    const mark = performance.getEntriesByName("email-editor-ready")[0];
    const nav = performance.getEntriesByType("navigation")[0];
    if (!mark) return setTimeout(done, 5);
    const script = performance.getEntriesByType("resource").find(r => r.name.includes("editor/editor.js"));
    resolve([mark.startTime, nav.responseEnd, script ? script.responseEnd : 0]);
  };
  done();
})"""


def document_of(blocks: int) -> str:
    """A visual document of `blocks` blocks, cycling through every kind the editor has."""
    text = [{"type": "text", "text": "Soup is back, "}]
    text.append({"type": "text", "text": "hot", "marks": [{"type": "bold"}]})
    text.append(
        {
            "type": "text",
            "text": " and cheap",
            "marks": [{"type": "link", "attrs": {"href": "https://example.com/soup"}}],
        }
    )
    kinds = [
        {"type": "heading", "attrs": {"level": 2}, "content": [{"type": "text", "text": "Soup"}]},
        {"type": "paragraph", "content": text},
        {
            "type": "bulletList",
            "content": [
                {"type": "listItem", "content": [{"type": "paragraph", "content": text}]}
                for _ in range(3)
            ],
        },
        {
            "type": "image",
            "attrs": {
                "src": "https://example.com/soup.png",
                "alt": "A bowl",
                "width": 300,
                "href": None,
                "imageId": None,
                "align": "center",
            },
        },
        {
            "type": "button",
            "attrs": {
                "text": "Read more",
                "href": "https://example.com/more",
                "background": "#2563eb",
                "color": "#ffffff",
                "align": "center",
            },
        },
        {"type": "blockquote", "content": [{"type": "paragraph", "content": text}]},
        {"type": "spacer", "attrs": {"height": 24}},
        {"type": "horizontalRule"},
    ]
    content = [kinds[index % len(kinds)] for index in range(blocks)]
    return json.dumps({"type": "doc", "attrs": {"layout": "center"}, "content": content})


def seed(*, blocks: int):
    """The owner's session cookie and the broadcast's editor path."""
    from django.test import Client

    from broadcasts.models import Broadcast
    from convertkit.models import Account, Membership, User

    account = Account.objects.create(name="Bench Kitchen")
    user = User.objects.create_user(email="bench@example.com", password="unused-password-1")
    Membership.objects.create(user=user, account=account, role=Membership.Role.OWNER)
    broadcast = Broadcast.objects.create(
        account=account,
        subject="Soup season",
        body_format=Broadcast.BodyFormat.VISUAL,
        body=document_of(blocks),
    )
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value, f"/broadcasts/{broadcast.id}/"


def serve():
    """The site on a free port of 127.0.0.1, from a daemon thread; its base URL."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler, allow_reuse_address=True)
    server.set_app(StaticFilesHandler(get_wsgi_application()))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}"


def _load(page, url: str) -> tuple[float, float, float]:
    """Opens the editor at `url` in `page`; (ready, HTML received, script received) in seconds
    since the navigation started."""
    page.goto(url)
    mark, response_end, script_end = page.evaluate(READY_JS)
    # percentile() takes seconds and gives milliseconds.
    return mark / 1000, response_end / 1000, script_end / 1000


def measure(*, base: str, path: str, session: str, repeat: int) -> dict:
    """Two ways in, `repeat` loads each after a warm-up: from the broadcasts list in the same
    tab (how a creator opens an email: the tab's renderer process is reused), and in a new tab
    (a renderer process started for it, which the first figure does not include)."""
    from playwright.sync_api import sync_playwright

    loads: dict[str, list[tuple[float, float, float]]] = {"same_tab": [], "new_tab": []}
    with sync_playwright() as playwright:
        # A profile on disk, as a creator's browser has: its HTTP cache and V8's code cache
        # outlive a tab (an incognito context keeps neither past its renderer process).
        profile = tempfile.mkdtemp(prefix="bench-editor-profile-")
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu"],
        )
        context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
        page = context.new_page()
        for attempt in range(repeat + 1):
            page.goto(base + "/broadcasts/")
            timing = _load(page, base + path)
            if attempt:
                loads["same_tab"].append(timing)
        page.close()
        for attempt in range(repeat + 1):
            page = context.new_page()
            timing = _load(page, base + path)
            if attempt:
                loads["new_tab"].append(timing)
            page.close()
        context.close()
        shutil.rmtree(profile, ignore_errors=True)
    figures = {}
    for way, timings in loads.items():
        ready, served, fetched = zip(*timings, strict=True)
        figures[f"{way}_ready_p50_ms"] = round(percentile(list(ready), 0.5), 1)
        figures[f"{way}_ready_p95_ms"] = round(percentile(list(ready), 0.95), 1)
        figures[f"{way}_html_p50_ms"] = round(percentile(list(served), 0.5), 1)
        figures[f"{way}_script_p50_ms"] = round(percentile(list(fetched), 0.5), 1)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--blocks", type=int, default=20, help="blocks of the document")
    parser.add_argument("--repeat", type=int, default=20, help="page loads, after one warm-up")
    parser.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    parser.add_argument(
        "--database", default="convertkit_editor_page_bench", help="bench database name"
    )
    args = parser.parse_args(argv)
    base_url = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/convertkit"
    database_recreate(base_url, args.database)
    os.environ["DATABASE_URL"] = bench_database_url(base_url, args.database)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "convertkit.settings")
    # Playwright's sync API runs an event loop in this thread; the ORM calls are plain ones.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    import django

    warnings.filterwarnings("ignore", message="No directory at")
    django.setup()
    from django.core.management import call_command
    from django.db import connections

    try:
        print(f"Migrating {args.database}", file=sys.stderr, flush=True)
        call_command("migrate", verbosity=0)
        session, path = seed(blocks=args.blocks)
        figures = measure(base=serve(), path=path, session=session, repeat=args.repeat)
    finally:
        connections.close_all()
        if not args.keep:
            database_recreate(base_url, args.database, drop_only=True)
    figures = {"blocks": args.blocks, "loads": args.repeat, **figures}
    for way, label in (("same_tab", "from the broadcasts list"), ("new_tab", "in a new tab")):
        print(
            f"editor ready {label}: {figures[f'{way}_ready_p50_ms']} ms p50, "
            f"{figures[f'{way}_ready_p95_ms']} ms p95 (p50: the page's HTML received at "
            f"{figures[f'{way}_html_p50_ms']} ms, the editor's script at "
            f"{figures[f'{way}_script_p50_ms']} ms), {args.blocks} blocks, {args.repeat} loads"
        )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
