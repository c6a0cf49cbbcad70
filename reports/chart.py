"""The 30-day trend chart of the summary, as PNG bytes, with a CJK font shipped as a package."""

from __future__ import annotations

import io
from datetime import date

import matplotlib

matplotlib.use("Agg")
from matplotlib import font_manager  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402

_FONT_NAME: str | None = None


def cjk_font() -> str:
    """Register the bundled Noto Sans CJK and return its family name (no tofu boxes for 中文)."""
    global _FONT_NAME
    if _FONT_NAME is None:
        from noto_cjk_sans_otc import FONT_PATH

        font_manager.fontManager.addfont(str(FONT_PATH))
        _FONT_NAME = font_manager.FontProperties(fname=str(FONT_PATH)).get_name()
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
