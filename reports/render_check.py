"""Render a summary .eml's HTML in headless Chromium to a PNG, so a person can look at it.

    python -m reports.render_check .local/outbox/xxx.eml [out.png] [width]

The inline chart is written beside the HTML and the bundled Noto Sans CJK is given to Chromium
through fontconfig, so the screenshot shows what a phone with CJK fonts shows.
"""

from __future__ import annotations

import email
import re
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


MIN_WINDOW = 500  # headless Chromium lays a page out at least this wide, whatever --window-size says


def _page(eml: Path, workdir: Path) -> Path:
    """The .eml's HTML as a local page, its inline images beside it."""
    msg = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    html = msg.get_body(preferencelist=("html",)).get_content()
    for part in msg.walk():
        cid = (part.get("Content-ID") or "").strip("<>")
        if cid and part.get_content_maintype() == "image":
            (workdir / f"{cid}.png").write_bytes(part.get_content())
            html = html.replace(f"cid:{cid}", f"{cid}.png")
    page = workdir / "summary.html"
    page.write_text(html, encoding="utf-8")
    return page


def _viewport(page: Path, width: int, height: int) -> Path:
    """A page showing `page` in a frame `width` px wide: the frame is a true viewport of that width
    (a phone's), narrower than the browser window can be; after load it reports the framed
    document's scrollWidth in the attribute data-scroll-width."""
    frame = page.with_name("viewport.html")
    frame.write_text(
        f'<!DOCTYPE html><html><body style="margin:0;"><iframe id="mail" src="{page.name}" width="{width}" '
        f'height="{height}" style="border:0;display:block;"></iframe><script>window.addEventListener("load", () => '
        '{ const doc = document.getElementById("mail").contentDocument; '
        'document.body.setAttribute("data-scroll-width", doc.documentElement.scrollWidth); });</script></body></html>',
        encoding="utf-8")
    return frame


def _chromium(workdir: Path, width: int, height: int, *args: str) -> subprocess.CompletedProcess:
    env = {"FONTCONFIG_FILE": str(_fontconfig(workdir)), "HOME": str(workdir), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, "--allow-file-access-from-files", f"--user-data-dir={workdir / 'profile'}",
         f"--window-size={max(width, MIN_WINDOW)},{height}", *args],
        env=env, check=True, capture_output=True, timeout=120, text=True)


def render_eml(eml: Path, out_png: Path, width: int = 680, height: int = 2200) -> Path:
    """A screenshot of the email as a `width` px wide screen shows it (the top `height` px)."""
    from PIL import Image

    out_png = out_png.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        frame = _viewport(_page(eml, Path(tmp)), width, height)
        _chromium(Path(tmp), width, height, "--virtual-time-budget=3000", f"--screenshot={out_png}", frame.as_uri())
    with Image.open(out_png) as shot:
        shot.crop((0, 0, width, height)).save(out_png)
    return out_png


def scroll_width(eml: Path, width: int) -> int:
    """The email's document.documentElement.scrollWidth in a viewport `width` px wide: more than
    `width` means the reader has to scroll sideways."""
    with tempfile.TemporaryDirectory() as tmp:
        frame = _viewport(_page(eml, Path(tmp)), width, 900)
        dom = _chromium(Path(tmp), width, 900, "--virtual-time-budget=3000", "--dump-dom", frame.as_uri()).stdout
    found = re.search(r'data-scroll-width="(\d+)"', dom)
    if not found:
        raise RuntimeError("the page did not report its scroll width")
    return int(found.group(1))


def main() -> None:
    eml = Path(sys.argv[1])
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else eml.with_suffix(".png")
    width = int(sys.argv[3]) if len(sys.argv) > 3 else 680
    print(render_eml(eml, out, width), "scrollWidth", scroll_width(eml, width))


if __name__ == "__main__":
    main()
