"""``veille report``: one self-contained HTML file about a labelled cohort and its rules.

The page holds the cohort summary, the backtest tables (:func:`engine.backtest.backtest_table`),
the sweep curves (:mod:`engine.sweep`) and, for selected patients, a timeline of their vitals with
detector outputs, thresholds, alerts, risk and labelled events. Everything is inline — CSS in a
``<style>``, figures as ``<svg>`` — and the page has no script at all, so it opens from a file
on a hospital workstation with no network. Labels are French unless ``lang='en'``.

Each figure is a ``<figure class="plot" data-points="N">``: N data points are drawn as markers
inside ``<g id="pts-…">`` groups (:mod:`.plots`).
"""
from __future__ import annotations

import html

import polars as pl

from ..backtest import lead_text, patient_days
from .plots import Plot, sweep_plots
from .text import number, percent, words
from .timelines import patient_plot, top_of_queue

SECTIONS = ("summary", "backtest", "sweep", "patients")

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;margin:2em auto;
max-width:1100px;color:#222;line-height:1.4;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;
margin-top:2em}table{border-collapse:collapse;margin:.8em 0;font-size:.85em}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}tr.all td{font-weight:bold;background:#fafafa}
figure.plot{margin:1em 0;padding:.5em;border:1px solid #eee}figure.plot svg{max-width:100%;
height:auto}figcaption{font-size:.85em;color:#444}.muted{color:#666}
dl.summary{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
dl.summary dt{font-weight:bold}details summary{cursor:pointer;font-weight:bold}
"""


def render(cohort, scored, *, sweep=None, patients=(), top: int = 3, lang: str = "fr",
           nurses: float = 1.0) -> str:
    """The report as one HTML document (text).

    ``cohort`` is a :class:`engine.labelled.LabelledCohort`, ``scored`` its
    :class:`engine.labelled.Scored` run; ``sweep`` an optional :class:`engine.sweep.SweepResult`;
    ``patients`` the ids to draw (default: the ``top`` first patients of the queue).
    """
    w = words(lang)
    res = scored.result
    ids = list(patients) or top_of_queue(res.queue, res.episodes, top)
    plots = [patient_plot(pid, res, scored.engine.ruleset, cohort.events, f"p{i}", lang)
             for i, pid in enumerate(ids)]
    rules = ", ".join(sorted({p.name for p in scored.engine.ruleset.packs}))
    body = [f"<h1>{_e(w['title'])}</h1>",
            f"<p class='muted'>{_e(w['generated'].format(cohort=cohort.folder, rules=rules, n=cohort.events.height))}</p>",
            _section("summary", w["summary"], _summary(cohort, scored, w, lang)),
            _section("backtest", w["backtest"], _backtest(scored.table, w, lang, nurses)),
            _section("sweep", w["sweep"], _sweep(sweep, w, lang)),
            _section("patients", w["timelines"],
                     f"<p>{_e(w['timelines_intro'])}</p>"
                     + ("".join(_figure(p) for p in plots) or f"<p>{_e(w['no_patient'])}</p>"))]
    return (f"<!DOCTYPE html>\n<html lang='{lang}'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{_e(w['title'])}</title><style>{CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _section(key: str, title: str, inner: str) -> str:
    return f"<section id='{key}'><h2>{_e(title)}</h2>{inner}</section>"


def _figure(p: Plot) -> str:
    return (f"<figure class='plot' data-points='{p.points}'>{p.svg}"
            f"<figcaption>{_e(p.caption)}</figcaption></figure>")


def _table(head: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    trs = "".join(f"<tr class='{c}'>" + "".join(f"<td>{_e(v)}</td>" for v in r) + "</tr>"
                  for r, c in zip(rows, classes or [""] * len(rows)))
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def _summary(cohort, scored, w, lang) -> str:
    res = scored.result
    clean, pats = res.clean, res.patients
    days = float(patient_days(clean, pats)["days"].sum())
    first, last = clean["ts"].min(), clean["ts"].max()
    items = [(w["patients"], number(pats.height, 0, lang)),
             (w["readings"], number(clean.height, 0, lang)),
             (w["patient_days"], number(days, 0, lang)),
             (w["span"], f"{first:%d/%m/%Y} – {last:%d/%m/%Y}"),
             (w["events"], number(cohort.events.height, 0, lang)),
             (w["alerts"], number(res.episodes.height, 0, lang))]
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    progs = pats.group_by("programme").len().sort("programme")
    evs = cohort.events.group_by("event_type").len().sort("event_type")
    return (f"<dl class='summary'>{dl}</dl>"
            + _table([w["programme"], w["patients"]],
                     [[r[0], number(r[1], 0, lang)] for r in progs.iter_rows()])
            + _table([w["event_type"], w["count"]],
                     [[r[0], number(r[1], 0, lang)] for r in evs.iter_rows()]))


def _backtest(table: pl.DataFrame, w, lang, nurses) -> str:
    head = [w["col_pack"], w["col_events"], w["col_detected"], w["col_sens"], w["col_lead"],
            w["col_alerts"], w["col_rate"], w["col_alerted"], w["col_ppv"], w["col_nurse"]]

    def rows(frame):
        out = []
        for r in frame.iter_rows(named=True):
            name = {"all": w["all_packs"], "pack": r["pack"]}.get(r["level"], r["rule_id"])
            lead = lead_text(r)
            out.append([name, str(r["events"]), str(r["detected"]),
                        percent(r["sensitivity"], lang),
                        lead.replace(".", ",") if lang == "fr" else lead,
                        str(r["episodes"]), number(r["alerts_per_100_pd"], 2, lang),
                        f"{r['patients_alerted']} / {r['patients']}", percent(r["ppv"], lang),
                        number(r["alerts_per_nurse_day"], 2, lang)])
        return out

    packs = table.filter(pl.col("level") != "rule")
    per_rule = table.filter(pl.col("level") == "rule")
    return (f"<p>{_e(w['backtest_intro'].format(nurses=f'{nurses:g}'))}</p>"
            f"<h3>{_e(w['per_pack'])}</h3>"
            + _table(head, rows(packs), ["all" if lv == "all" else "" for lv in packs["level"]])
            + f"<details><summary>{_e(w['per_rule'])}</summary>"
            + _table(head, rows(per_rule)) + "</details>")


def _sweep(sweep, w, lang) -> str:
    if sweep is None:
        return f"<p class='muted'>{_e(w['sweep_none'])}</p>"
    names = [p.qualified for p in sweep.params]
    units = {p.qualified: p.unit for p in sweep.params}
    plots = sweep_plots(sweep.points, names, lang)
    head = [f"{n} ({units[n]})" if units[n] else n for n in names] + [
        "", w["col_alerts"], w["col_rate"], w["col_detected"], w["col_sens"], w["col_lead"],
        w["col_ppv"]]
    rows = []
    for r in sweep.points.iter_rows(named=True):
        lead = lead_text(r)
        rows.append([number(r[n], 2, lang) for n in names]
                    + [("★" if r["current"] else "") + ("◆" if r["pareto"] else ""),
                       str(r["episodes"]), number(r["alerts_per_100_pd"], 2, lang),
                       f"{r['detected']} / {r['events']}", percent(r["sensitivity"], lang),
                       lead.replace(".", ",") if lang == "fr" else lead, percent(r["ppv"], lang)])
    return (f"<p>{_e(w['sweep_intro'].format(params=', '.join(names)))}</p>"
            + "".join(_figure(p) for p in plots)
            + _table(head, rows, ["all" if c else "" for c in sweep.points["current"]]))
