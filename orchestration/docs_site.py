"""The documentation site of a local install: dbt docs at /dbt-docs/, GX Data Docs at /data-docs/.

`make docs` serves it on http://localhost:8081 (the email's links point there when GOV_DOCS_BASE_URL says so);
compose's `docs` service serves the same two folders from the shared volumes (`python -m orchestration.docs_site`):
the dbt docs gov_publish's dbt_docs task regenerates each night, and the Data Docs GX updates. Files are served
only from inside the two folders: a path that leaves them (`..`, a symlink out) is not found."""

from __future__ import annotations

import argparse
import functools
import http.server
import threading
import urllib.parse
from pathlib import Path

MOUNTS = ("dbt-docs", "data-docs")


class _Handler(http.server.SimpleHTTPRequestHandler):
    mounts: dict[str, Path] = {}

    def translate_path(self, path: str) -> str:
        url_path = urllib.parse.unquote(path.split("?", 1)[0].split("#", 1)[0])
        mount, _, rest = url_path.lstrip("/").partition("/")
        root = self.mounts.get(mount)
        if root is None:
            return str(Path("/nonexistent"))
        target = (root / rest).resolve()
        if target != root and root not in target.parents:
            return str(Path("/nonexistent"))
        return str(target)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.path.split("?", 1)[0] in ("", "/"):
            body = index_page(self.mounts).encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def list_directory(self, path):  # noqa: ANN001 - the stdlib's signature
        self.send_error(404, "not found")
        return None

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's name
        pass  # a local convenience: no access log on the console


def index_page(mounts: dict[str, Path]) -> str:
    links = "".join(f'<li><a href="/{m}/">{m}</a>{"" if (mounts[m] / "index.html").exists() else " (not built yet)"}</li>'
                    for m in MOUNTS)
    return f"<!doctype html><meta charset=utf-8><title>docs</title><ul>{links}</ul>"


def serve(dbt_docs: Path, data_docs: Path, port: int = 8081, host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    """Start serving in a background thread; returns the server (`.shutdown()` stops it)."""
    mounts = {"dbt-docs": dbt_docs.resolve(), "data-docs": data_docs.resolve()}
    handler = type("Handler", (_Handler,), {"mounts": mounts})
    server = http.server.ThreadingHTTPServer((host, port), functools.partial(handler))
    threading.Thread(target=server.serve_forever, daemon=True, name="docs-site").start()
    return server


def main(argv: list[str] | None = None) -> None:
    """Serve until stopped (compose's docs service)."""
    import time

    parser = argparse.ArgumentParser(prog="python -m orchestration.docs_site", description=main.__doc__)
    parser.add_argument("--dbt-docs", type=Path, required=True, help="dbt's target folder (docs generate)")
    parser.add_argument("--data-docs", type=Path, required=True, help="GX's Data Docs site folder")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    args = parser.parse_args(argv)
    # a folder not made yet (before the first night) shows as "not built yet" on the index page
    server = serve(args.dbt_docs, args.data_docs, port=args.port, host=args.bind)
    print(f"docs site on {args.bind}:{server.server_address[1]}: /dbt-docs/ and /data-docs/", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
