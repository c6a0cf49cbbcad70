"""Render a summary .eml's HTML in headless Chromium to a PNG, so a person can look at it.

    python -m reports.render_check .local/outbox/xxx.eml [out.png]

The inline chart is written beside the HTML and the bundled Noto Sans CJK is given to Chromium
through fontconfig, so the screenshot shows what a phone with CJK fonts shows.
"""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import tempfile
from email import policy
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError("no Chromium found: install Debian's `chromium` package")


def _fontconfig(workdir: Path) -> Path:
    from noto_cjk_sans_otc import FONT_PATH

    conf = workdir / "fonts.conf"
    conf.write_text(
        '<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd"><fontconfig>'
        f"<dir>{Path(str(FONT_PATH)).parent}</dir><include ignore_missing=\"yes\">/etc/fonts/fonts.conf</include>"
        f"<cachedir>{workdir / 'fc-cache'}</cachedir></fontconfig>"
    )
    return conf


def render_eml(eml: Path, out_png: Path, width: int = 680, height: int = 2200) -> Path:
    msg = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    html = msg.get_body(preferencelist=("html",)).get_content()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for part in msg.walk():
            cid = (part.get("Content-ID") or "").strip("<>")
            if cid and part.get_content_maintype() == "image":
                (workdir / f"{cid}.png").write_bytes(part.get_content())
                html = html.replace(f"cid:{cid}", f"{cid}.png")
        page = workdir / "summary.html"
        page.write_text(html, encoding="utf-8")
        env = {"FONTCONFIG_FILE": str(_fontconfig(workdir)), "HOME": tmp, "PATH": "/usr/bin:/bin"}
        out_png = out_png.resolve()
        subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={workdir / 'profile'}", f"--window-size={width},{height}",
             f"--screenshot={out_png}", page.as_uri()],
            env=env, check=True, capture_output=True, timeout=120,
        )
    return out_png


def main() -> None:
    eml = Path(sys.argv[1])
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else eml.with_suffix(".png")
    print(render_eml(eml, out))


if __name__ == "__main__":
    main()
