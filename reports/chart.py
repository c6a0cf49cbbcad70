"""The 30-day trend chart of the summary, as PNG bytes, in Noto Sans CJK: the system's (Debian's fonts-noto-cjk, in
the image) when installed, else the packaged copy (noto-cjk-sans-otc, for `make demo` on any machine)."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib import font_manager  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402

# where Debian/Ubuntu's fonts-noto-cjk puts the Sans CJK collection (first found wins)
SYSTEM_FONTS = (Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
                Path("/usr/share/fonts/opentype/noto-cjk/NotoSansCJK-Regular.ttc"))
_FONT_NAME: str | None = None


def cjk_font_path(system_fonts: tuple[Path, ...] = SYSTEM_FONTS) -> Path:
    """The system's Noto Sans CJK when installed (a well-kept Debian package), else the packaged fallback."""
    for path in system_fonts:
        if path.is_file():
            return path
    from noto_cjk_sans_otc import FONT_PATH

    return Path(FONT_PATH)


def register_font(path: Path) -> str:
    """Register a font file with matplotlib; returns its family name."""
    font_manager.fontManager.addfont(str(path))
    return font_manager.FontProperties(fname=str(path)).get_name()


def cjk_font() -> str:
    """Register Noto Sans CJK (cjk_font_path) once and return its family name (no tofu boxes for 中文)."""
    global _FONT_NAME
    if _FONT_NAME is None:
        _FONT_NAME = register_font(cjk_font_path())
    return _FONT_NAME


def trend_png(days: list[date], received: list[int | None], resolved: list[int | None],
              overnight: list[float | None], title: str) -> bytes:
    """Cases received and resolved (bars/lines) with the overnight rate on a second axis."""
    family = cjk_font()
    plt.rcParams["font.family"] = family
    plt.rcParams["axes.unicode_minus"] = False
    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=110)
    x = list(range(len(days)))
    nan = float("nan")
    ax.bar(x, [nan if v is None else v for v in received], color="#fca5a5", label="受理事项")
    ax.plot(x, [nan if v is None else v for v in resolved], color="#b91c1c", marker="o", markersize=2.5,
            linewidth=1.5, label="办结事项")
    ax.set_ylabel("件")
    known = [v for v in received + resolved if v is not None]
    ax.set_ylim(0, max(known + [1]) * 1.45)  # headroom for the legend
    ax.set_title(title, fontsize=11)
    step = max(1, len(days) // 6)
    ax.set_xticks(x[::step], [f"{d.month}月{d.day}日" for d in days[::step]], fontsize=8)
    ax2 = ax.twinx()
    rates = [None if r is None else float(r) * 100 for r in overnight]
    # markers: on a short history a rate can be a single point, which a bare line does not draw
    ax2.plot(x, [float("nan") if r is None else r for r in rates], color="#1d4ed8", linestyle="--",
             linewidth=1.2, marker="s", markersize=3, label="解决不隔夜率(%)")
    ax2.set_ylim(0, 100)
    ax2.set_ylabel("%")
    handles = ax.get_legend_handles_labels()
    handles2 = ax2.get_legend_handles_labels()
    ax.legend(handles[0] + handles2[0], handles[1] + handles2[1], loc="upper left", fontsize=8, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
