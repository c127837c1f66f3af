"""The report's figures: matplotlib drawn to SVG text, inlined in the page.

No pyplot and no global backend: each figure is a :class:`matplotlib.figure.Figure` saved to
SVG. Text stays text (``svg.fonttype = none``: the reader's sans-serif font, no font file, no
network). Every series of data points is drawn with markers inside a group whose id starts
with ``pts-``; :class:`Plot` carries how many points were drawn, so a test can check that the
browser shows exactly that many markers.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass

import matplotlib
import polars as pl
from matplotlib.dates import AutoDateLocator, DateFormatter
from matplotlib.figure import Figure

from .text import words

#: a series with more points than this is drawn as hourly means (a 5-minute CGM over six weeks
#: would otherwise put 12,000 markers in the page)
MAX_MARKERS = 800
SEVERITY_COLOURS = {"high": "#d62728", "medium": "#ff7f0e", "low": "#1f77b4"}
_HEADER = re.compile(r"^.*?(?=<svg)", re.S)


@dataclass
class Plot:
    """One figure: its SVG text, its caption and the number of data points it draws."""

    svg: str
    caption: str
    points: int


class Canvas:
    """A figure being drawn; :meth:`series` adds a marked series and counts its points."""

    def __init__(self, key: str, rows: int = 1, height: float = 2.2, width: float = 9.0):
        self.key = key
        self.fig = Figure(figsize=(width, height * rows), layout="constrained")
        self.axes = self.fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
        self.points = 0
        self._n = 0

    def series(self, ax, x, y, **kw) -> None:
        x, y = list(x), list(y)
        if not x:
            return
        line, = ax.plot(x, y, **{"marker": "o", "markersize": 3, "linewidth": 1, **kw})
        line.set_gid(f"pts-{self.key}-{self._n}")
        self._n += 1
        self.points += len(x)

    def done(self, caption: str) -> Plot:
        buf = io.StringIO()
        with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": self.key,
                                    "font.family": "sans-serif", "font.size": 9}):
            self.fig.savefig(buf, format="svg", metadata={"Date": None})
        return Plot(_HEADER.sub("", buf.getvalue(), count=1), caption, self.points)


def sweep_plots(points: pl.DataFrame, names: list[str], lang: str) -> list[Plot]:
    """Burden against sensitivity, and against median lead time (IQR as bars): every point,
    the Pareto front joined, the current value starred, each point labelled with its values."""
    w = words(lang)
    label = [", ".join(f"{r[n]:g}" for n in names) for r in points.iter_rows(named=True)]
    x = points["alerts_per_100_pd"].to_list()
    out = []
    for i, (col, ylab, cap) in enumerate((("sensitivity", w["sensitivity"], w["sweep_fig1"]),
                                          ("median_lead_h", w["lead"], w["sweep_fig2"]))):
        c = Canvas(f"sweep{i}", height=3.6, width=7.5)
        ax = c.axes[0]
        scale = 100.0 if col == "sensitivity" else 1.0
        y = [None if v is None else v * scale for v in points[col].to_list()]
        keep = [k for k, v in enumerate(y) if v is not None and x[k] is not None]
        c.series(ax, [x[k] for k in keep], [y[k] for k in keep], linestyle="none",
                 color="#7f7f7f", label=w["points"])
        if col == "median_lead_h":
            q1, q3 = points["lead_q1_h"].to_list(), points["lead_q3_h"].to_list()
            for k in keep:
                ax.vlines(x[k], q1[k], q3[k], color="#c7c7c7", linewidth=1)
        front = sorted((x[k], y[k]) for k in keep if points["pareto"][k])
        if front:
            c.series(ax, *zip(*front), color="#2ca02c", linewidth=1.5, markersize=5,
                     label=w["pareto"])
        cur = [k for k in keep if points["current"][k]]
        if cur:
            c.series(ax, [x[k] for k in cur], [y[k] for k in cur], marker="*",
                     markersize=14, linestyle="none", color="#d62728", label=w["current"])
        for k in keep:
            ax.annotate(label[k], (x[k], y[k]), textcoords="offset points", xytext=(3, 3),
                        fontsize=6, color="#555555")
        ax.set_xlabel(w["burden"])
        ax.set_ylabel(ylab)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=7)
        out.append(c.done(cap))
    return out


@dataclass
class Panel:
    """One panel of a patient's timeline: a title with its unit, the series (``ts``,
    ``value``) and the thresholds to draw (label, value)."""

    title: str
    unit: str
    frame: pl.DataFrame
    thresholds: list


def _thin(frame: pl.DataFrame) -> tuple[pl.DataFrame, bool]:
    if frame.height <= MAX_MARKERS:
        return frame, False
    hourly = (frame.sort("ts").group_by_dynamic("ts", every="1h")
              .agg(pl.col("value").mean()))
    if hourly.height > MAX_MARKERS:
        hourly = (frame.sort("ts").group_by_dynamic("ts", every="6h")
                  .agg(pl.col("value").mean()))
    return hourly, True


def timeline_plot(key: str, panels: list[Panel], episodes: pl.DataFrame,
                  events: pl.DataFrame, risk: pl.DataFrame | None, span, caption: str,
                  lang: str) -> Plot:
    """A patient's timeline: one panel per vital or detector (readings as markers, thresholds
    as dashed lines), alerts as bands from opening to resolution and a ▼ at each firing,
    labelled events as vertical lines (their prodrome shaded), and the risk when a model ran."""
    w = words(lang)
    rows = len(panels) + (1 if risk is not None and risk.height else 0)
    c = Canvas(key, rows=max(rows, 1), height=1.9)
    start, end = span
    axes = list(c.axes)
    for ax, p in zip(axes, panels):
        data, thinned = _thin(p.frame.drop_nulls("value"))
        c.series(ax, data["ts"].to_list(), data["value"].to_list(), color="#1f77b4",
                 markersize=2 if thinned else 3)
        for name, value in p.thresholds:
            ax.axhline(value, color="#d62728", linestyle="--", linewidth=0.9)
            ax.annotate(f"{w['threshold']} {name}", (1.0, value), xycoords=("axes fraction",
                                                                            "data"),
                        ha="right", va="bottom", fontsize=6, color="#d62728")
        suffix = f" ({w['hourly']})" if thinned else ""
        ax.set_ylabel(f"{p.title}\n({p.unit}){suffix}" if p.unit else p.title + suffix,
                      fontsize=7)
    if rows > len(panels):
        ax = axes[len(panels)]
        c.series(ax, risk["ts"].to_list(), (risk["risk"] * 100).to_list(), color="#9467bd",
                 markersize=2)
        ax.set_ylabel(w["risk"].replace(" (%)", "\n(%)"), fontsize=7)
    for ax in axes:
        for r in episodes.iter_rows(named=True):
            ax.axvspan(r["opened_at"], r["resolved_at"] or end,
                       color=SEVERITY_COLOURS.get(r["severity"], "#7f7f7f"), alpha=0.12,
                       linewidth=0)
        for r in events.iter_rows(named=True):
            if r["onset"] < r["event_time"]:
                ax.axvspan(r["onset"], r["event_time"], color="#000000", alpha=0.06,
                           linewidth=0, hatch="//")
            ax.axvline(r["event_time"], color="#000000", linestyle=":", linewidth=1.2)
        ax.set_xlim(start, end)
        ax.grid(True, alpha=0.3)
    top = axes[0]
    if episodes.height:
        ymax = top.get_ylim()[1]
        for sev, grp in episodes.group_by("severity", maintain_order=True):
            c.series(top, grp["opened_at"].to_list(), [ymax] * grp.height, marker="v",
                     linestyle="none", markersize=7, clip_on=False,
                     color=SEVERITY_COLOURS.get(sev[0], "#7f7f7f"))
    for r in events.iter_rows(named=True):
        top.annotate(r["event_type"], (r["event_time"], 1.0), xycoords=("data", "axes fraction"),
                     rotation=90, va="top", ha="right", fontsize=6)
    axes[-1].xaxis.set_major_locator(AutoDateLocator(minticks=4, maxticks=10))
    axes[-1].xaxis.set_major_formatter(DateFormatter("%d/%m"))
    axes[-1].set_xlabel(w["time"])
    return c.done(caption)
