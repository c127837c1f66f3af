"""Quality of the deterioration-risk model on held-out synthetic cohorts: the honest evaluation.

Run from the repository root::

    uv run python -m benchmarks.quality                       # bundled model, 4 x 600 patients
    uv run python -m benchmarks.quality --model /tmp/model1   # a model folder of `veille train`
    uv run python -m benchmarks.quality --quick               # 150 patients, 28 days, 1 seed each

**Cohorts.** Four cohorts are generated in a temporary folder, none with the seed of the
training cohort (the seeds a card names — ``training.seed``, a ``--seed`` in
``training.command``, the ``generator.json`` of ``training.cohort`` when that folder is here —
are refused, and so is a cohort whose telemetry file is byte for byte the training one): the
``default`` generator with two other seeds ("default variant, other seeds": new patients from
the distribution the model was trained on) and the ``shifted`` generator with two seeds
("shifted variant": noisier devices, half the events, sparser and less adherent sampling,
subtler and slower deteriorations, more gaps and artefacts, never seen in training). Each group
pools its two seeds; the patient is the unit of every resampling.

**Rows and labels.** Every patient's 4-hour grid (:func:`engine.risk.train.cohort_features`,
the stages ``veille score`` runs), labelled as in training (:func:`engine.risk.train.label`):
``y = 1`` when a deterioration event (:data:`~engine.risk.train.DETERIORATION_EVENTS`) follows
within (ts, ts + 48 h]; the 72 h after an event are left out. Four scores are compared on
exactly these rows and labels:

* **model**: the calibrated gradient-boosting probability;
* **logistic baseline**: the calibrated logistic regression of the same artifact
  (``<model>/baseline``), same features;
* **NEWS2**: the complete NEWS2 total at the grid time, a missing or stale set read as 0 (no
  spot-check set, no alert); a second AUROC/AUPRC on the rows where NEWS2 is defined only;
* **rule packs alone**: the highest severity of the bundled packs' alerts open at that time
  (3 high, 2 medium, 1 low, 0 none).

**Row-level figures.** AUROC and AUPRC (average precision), each with a 95 % percentile
bootstrap interval that resamples *patients* with replacement (``--resamples``, default 500,
seeded by ``--bootstrap-seed``), the paired AUROC difference model − NEWS2 on the same
resamples; Brier score and calibration slope and intercept (logistic recalibration of y on
logit p, :func:`engine.risk.train.metrics`) for the two probabilities only.

**Event-level figures** (what a coordination team lives with), at fixed operating points. A risk
alert *opens* at a grid time where the score is at or above the threshold and was not at the
patient's previous grid time, and stays open while it stays at or above. An event is **caught**
when an alert opens in the 48 h before it, ``[event - 48 h, event)`` (the horizon the model is
trained on; an alert that opened earlier and is still open does not count, an alert at or after
the event is not early). Sensitivity is caught / events; burden is alert openings per 100
patient-days (:func:`engine.backtest.patient_days`: enrolment or first reading to last reading);
lead time is the event time minus the first opening in the window (median over caught events).
Operating points: model and baseline at 5, 10 and 20 %; NEWS2 at 5 and 7 (the Royal College of
Physicians' medium and high triggers), counted on the same grid; the rule packs from their actual
episodes (any pack's episode opening in the window; burden: every episode of every pack).

**The queue with risk** (the milestone's acceptance). High-severity rule alerts always reach the
queue; a medium or low one reaches it only when the model's risk at its opening (the latest grid
time at or before ``opened_at``) is at least tau (an alert with no grid time before it is
queued: unknown risk is not low risk). For tau on a grid, the queue's burden and event-level
sensitivity (an event is caught when a *queued* alert opens in the 48 h before it). Because the
held queue is a subset of the rules' alerts it can never catch more than the rules alone; the
variant "held rule alerts + risk-only alerts when the risk rises to theta" can. The report says
whether some tau > 0 (or tau, theta) reaches at most 10 alerts per 100 patient-days while
catching at least as many events as the rule packs alone. That search picks the best of many
policies on the very cohorts it reports, so it is optimistic; the pre-specified test is the
policy chosen on the default-variant group applied unchanged to the shifted group.

**What a synthetic result proves, and what it does not.** The cohorts come from veille's own
generator, which plants the deterioration signals (a weight gain before a heart failure
decompensation, a falling SpO2 before a COPD exacerbation...) and labels them. A good figure here
shows that the pipeline — features from the same stages as the rules, labels, patient split,
calibration, the artifact — learns the signals the generator plants, ranks and catches those
events better or worse than NEWS2 and the rules, and stays calibrated (or not) on a configuration
of the generator it never saw. It says **nothing** about real patients: real deteriorations,
devices, adherence and event definitions are not the generator's, and the rules and the model
share the generator's view of physiology. Before any clinical use the model must be retrained and
evaluated on a site's own adjudicated history, and this benchmark rerun there.

Outputs (``--out``, default ``benchmarks/results/quality/``; ``--quick`` writes under
``quick/`` in it): ``quality.md`` (the tables printed), ``quality.json`` (every figure, the
configuration, per-cohort counts and timings; not the resamples themselves),
``roc_<group>.svg``, ``calibration_<group>.svg`` and ``tradeoff_<group>.svg``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from engine.sources import file_sha256

RESULTS = Path(__file__).resolve().parent / "results" / "quality"
HORIZON = dt.timedelta(hours=48)

#: cohort groups: key -> (generator variant, title)
GROUPS = {"default": ("default", "default variant, other seeds"),
          "shifted": ("shifted", "shifted variant")}
#: operating points of the two probabilities
THRESHOLDS = (0.05, 0.10, 0.20)
#: NEWS2 triggers (RCP 2017: 5 medium clinical risk, 7 high)
NEWS2_TRIGGERS = (5, 7)
#: tau grid of the held-queue policy (inf: only high-severity rule alerts)
TAUS = (0.0, 0.0025, 0.005, 0.0075, 0.01, 0.02, 0.03, 0.05, 0.075, 0.10, 0.15, 0.20, 0.30,
        0.50, math.inf)
#: theta grid of the risk-only alerts added to the held queue
THETAS = (0.05, 0.10, 0.20, 0.30, 0.50)
#: the acceptance target: queue burden at most this many alerts per 100 patient-days
BURDEN_TARGET = 10.0
#: the columns of an alert: its patient, when it opened, when it closed (null: still open)
ALERT_COLUMNS = ("patient_id", "opened_at", "closed_at")
SCORES = ("model", "baseline", "news2", "rules", "news2_defined", "model_news2_rows")
SCORE_TITLES = {"model": "model (gradient boosting)", "baseline": "logistic baseline",
                "news2": "NEWS2 (missing → 0)",
                "news2_defined": "NEWS2, rows where it is defined",
                "model_news2_rows": "model, the same rows",
                "rules": "rule packs alone (max severity open)"}
#: paired AUROC differences reported (same resamples)
PAIRS = (("model", "news2"), ("model_news2_rows", "news2_defined"), ("model", "baseline"),
         ("model", "rules"))
PAIR_TITLES = {"model-news2": "model − NEWS2 (all rows)",
               "model_news2_rows-news2_defined": "model − NEWS2 (rows where NEWS2 is defined)",
               "model-baseline": "model − logistic baseline",
               "model-rules": "model − rule packs alone"}


# -- bootstrap by patient ---------------------------------------------------------------------

class RankedScore:
    """A score's rows sorted once (descending, ties grouped) so that AUROC and average precision
    can be computed for many patient resamples at once.

    ``groups`` gives each row's patient as an integer code in ``0..n_groups-1``; a resample is a
    row of a weight matrix ``W`` (resamples × patients): how many times each patient was drawn.
    A row's weight is its patient's; ties are handled as scikit-learn does (AUROC counts a tied
    pair as one half; average precision steps at each distinct score).
    """

    def __init__(self, score: np.ndarray, y: np.ndarray, groups: np.ndarray):
        score = np.asarray(score, float)
        order = np.argsort(-score, kind="stable")
        s = score[order]
        self.y = np.asarray(y)[order].astype(bool)
        self.groups = np.asarray(groups)[order]
        #: last row of each run of equal scores
        self.ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True]) if s.size else np.zeros(0, int)

    def evaluate(self, W: np.ndarray, chunk: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """AUROC and average precision per row of ``W`` (NaN where a class is absent)."""
        W = np.atleast_2d(np.asarray(W, float))
        auc = np.full(W.shape[0], np.nan)
        ap = np.full(W.shape[0], np.nan)
        if self.ends.size == 0:
            return auc, ap
        for lo in range(0, W.shape[0], chunk):
            w = W[lo:lo + chunk][:, self.groups]                  # (b, rows)
            pos = np.cumsum(np.where(self.y, w, 0.0), axis=1)[:, self.ends]
            neg = np.cumsum(np.where(self.y, 0.0, w), axis=1)[:, self.ends]
            P, N = pos[:, -1:], neg[:, -1:]
            dp = np.diff(pos, axis=1, prepend=0.0)
            dn = np.diff(neg, axis=1, prepend=0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                a = (dp * (N - neg + 0.5 * dn)).sum(axis=1) / (P[:, 0] * N[:, 0])
                prec = np.where(pos + neg > 0, pos / np.maximum(pos + neg, 1e-300), 0.0)
                p = (dp * prec).sum(axis=1) / P[:, 0]
            ok = (P[:, 0] > 0) & (N[:, 0] > 0)
            auc[lo:lo + chunk] = np.where(ok, a, np.nan)
            ap[lo:lo + chunk] = np.where(P[:, 0] > 0, p, np.nan)
        return auc, ap


def resample_weights(n_groups: int, resamples: int, seed: int) -> np.ndarray:
    """``resamples`` × ``n_groups`` counts: patients drawn with replacement, ``n_groups`` each."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=resamples) \
        .astype(float)


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap values (NaNs ignored)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.percentile(v, [50 * (1 - level), 50 * (1 + level)])
    return (float(lo), float(hi))


def bootstrap(scores: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], n_groups: int,
              resamples: int, seed: int, pairs=(("model", "news2"),)) -> dict:
    """Point AUROC and AUPRC of each score with patient-bootstrap 95 % intervals, and paired
    AUROC differences on the same resamples.

    ``scores``: name -> (score, y, patient code) (rows may differ between scores: a score
    defined on part of the rows keeps its patients' codes, and the same resample weights apply).
    """
    W = resample_weights(n_groups, resamples, seed)
    ones = np.ones((1, n_groups))
    out, boot = {}, {}
    for name, (s, y, g) in scores.items():
        r = RankedScore(s, y, g)
        auc0, ap0 = r.evaluate(ones)
        auc, ap = r.evaluate(W)
        boot[name] = auc
        out[name] = {"n": int(np.asarray(y).size), "positives": int(np.asarray(y).sum()),
                     "patients": int(np.unique(g).size),
                     "auroc": float(auc0[0]), "auroc_ci": interval(auc),
                     "auprc": float(ap0[0]), "auprc_ci": interval(ap)}
    diffs = {}
    for a, b in pairs:
        if a in boot and b in boot:
            d = boot[a] - boot[b]
            diffs[f"{a}-{b}"] = {"auroc_difference": out[a]["auroc"] - out[b]["auroc"],
                                 "ci": interval(d), "resamples": resamples}
    return {"scores": out, "differences": diffs, "resamples": resamples, "seed": seed}


# -- alerts and events ------------------------------------------------------------------------

def risk_openings(grid: pl.DataFrame, column: str, threshold: float) -> pl.DataFrame:
    """The alerts a score opens: ``patient_id``, ``opened_at`` at every grid time where
    ``column`` is at or above ``threshold`` and the patient's previous grid time was not (or
    there is none), and ``closed_at``, the first grid time after it below the threshold again
    (null while it is still open at the patient's last grid time). ``grid`` holds every grid
    time of each patient; a null score is below any threshold."""
    above = (pl.col(column).cast(pl.Float64) >= threshold).fill_null(False)
    g = (grid.select("patient_id", "ts", above.alias("_a")).sort("patient_id", "ts")
         .with_columns(_prev=pl.col("_a").shift(1).over("patient_id").fill_null(False),
                       _next=pl.col("ts").shift(-1).over("patient_id")))
    g = g.with_columns(_run=(pl.col("_a") & ~pl.col("_prev")).cast(pl.Int64).cum_sum()
                       .over("patient_id"))
    return (g.filter("_a").group_by("patient_id", "_run", maintain_order=True)
            .agg(opened_at=pl.col("ts").first(), closed_at=pl.col("_next").last())
            .select("patient_id", "opened_at", "closed_at"))


def event_level(events: pl.DataFrame, alerts: pl.DataFrame, horizon: dt.timedelta = HORIZON
                ) -> pl.DataFrame:
    """Per event (``patient_id``, ``event_time``, in their order): ``caught`` when an alert of
    ``alerts`` (``patient_id``, ``opened_at``, optionally ``closed_at``) of the same patient
    opened in ``[event_time - horizon, event_time)``; ``lead_h``, the event time minus the first
    such opening in hours (null when missed); ``open_in_window`` when an alert was open at some
    time of that window, whenever it opened (``opened_at`` before the event and ``closed_at``
    null or after the window's start; without ``closed_at`` an alert is open for good)."""
    ev = events.select("patient_id", "event_time").with_row_index("_ev")
    closed = pl.col("closed_at") if "closed_at" in alerts.columns else pl.lit(None)
    al = alerts.select("patient_id", "opened_at", closed.cast(pl.Datetime("us", "UTC"))
                       .alias("closed_at"))
    pairs = ev.join(al, on="patient_id", how="inner")
    start = pl.col("event_time") - horizon
    hit = (pairs.filter((pl.col("opened_at") >= start)
                        & (pl.col("opened_at") < pl.col("event_time")))
           .group_by("_ev").agg(pl.col("opened_at").min().alias("_first")))
    cover = (pairs.filter((pl.col("opened_at") < pl.col("event_time"))
                          & (pl.col("closed_at").is_null() | (pl.col("closed_at") > start)))
             .select("_ev").unique().with_columns(_open=pl.lit(True)))
    out = ev.join(hit, on="_ev", how="left").join(cover, on="_ev", how="left").sort("_ev")
    return out.select("patient_id", "event_time",
                      caught=pl.col("_first").is_not_null(),
                      lead_h=(pl.col("event_time") - pl.col("_first")).dt.total_seconds()
                      / 3600.0,
                      open_in_window=pl.col("_open").fill_null(False))


def summarise(events: pl.DataFrame, alerts: pl.DataFrame, patient_days: float,
              horizon: dt.timedelta = HORIZON) -> dict:
    """Events, caught, sensitivity, median lead time (h), events with an alert open in the
    window, alerts and alerts per 100 patient-days of one alerting policy."""
    per = event_level(events, alerts, horizon)
    caught = int(per["caught"].sum())
    lead = per.filter("caught")["lead_h"]
    return {"events": per.height, "caught": caught,
            "sensitivity": caught / per.height if per.height else None,
            "median_lead_h": float(lead.median()) if lead.len() else None,
            "open_in_window": int(per["open_in_window"].sum()),
            "alerts": alerts.height,
            "alerts_per_100_pd": 100.0 * alerts.height / patient_days if patient_days else None}


def risk_at_opening(episodes: pl.DataFrame, grid: pl.DataFrame, column: str = "model"
                    ) -> pl.DataFrame:
    """``episodes`` with ``risk``: ``column`` of ``grid`` at the latest grid time of the
    patient at or before the episode's ``opened_at`` (null when there is none)."""
    ep = episodes.with_row_index("_ep").sort("patient_id", "opened_at")
    g = grid.select("patient_id", pl.col("ts").alias("_ts"), pl.col(column).alias("risk")) \
        .sort("patient_id", "_ts")
    got = ep.join_asof(g, left_on="opened_at", right_on="_ts", by="patient_id",
                       strategy="backward", check_sortedness=False)
    return got.sort("_ep").drop("_ep", "_ts")


def held_queue(episodes: pl.DataFrame, tau: float) -> pl.DataFrame:
    """The rule alerts that reach the queue under the policy "high always; medium and low only
    when the risk at opening is at least ``tau``" (an unknown risk is queued). ``episodes``
    needs ``severity`` and ``risk`` (:func:`risk_at_opening`)."""
    keep = ((pl.col("severity") == "high") | pl.col("risk").is_null()
            | (pl.col("risk") >= tau))
    return episodes.filter(keep)


def queue_tradeoff(episodes: pl.DataFrame, events: pl.DataFrame, grid: pl.DataFrame,
                   patient_days: float, taus=TAUS, thetas=THETAS,
                   horizon: dt.timedelta = HORIZON) -> dict:
    """The held-queue policy for each tau (``held``) and with risk-only alerts for each theta
    (``with_risk``), beside the rule packs alone (``rules``), with the acceptance verdict."""
    ep = risk_at_opening(episodes.select("patient_id", "severity", "opened_at", "closed_at"),
                         grid)
    rules = summarise(events, ep, patient_days, horizon)
    held = []
    for tau in taus:
        q = held_queue(ep, tau)
        row = summarise(events, q, patient_days, horizon)
        held.append({"tau": tau, **row,
                     "share_of_rule_alerts": q.height / ep.height if ep.height else None})
    with_risk = []
    for theta in thetas:
        extra = risk_openings(grid, "model", theta)
        for tau in taus:
            q = held_queue(ep, tau).select(ALERT_COLUMNS)
            both = pl.concat([q, extra.select(ALERT_COLUMNS)])
            with_risk.append({"theta": theta, "tau": tau,
                              **summarise(events, both, patient_days, horizon),
                              "rule_alerts": q.height, "risk_alerts": extra.height})

    def within(r):
        return r["alerts_per_100_pd"] is not None and r["alerts_per_100_pd"] <= BURDEN_TARGET

    def best(rows):
        """The lowest burden within the target that catches at least the rules' events."""
        good = [r for r in rows if within(r) and r["caught"] >= rules["caught"]]
        return min(good, key=lambda r: r["alerts_per_100_pd"]) if good else None

    def closest(rows):
        """Within the target, the most events caught (then the lowest burden)."""
        good = [r for r in rows if within(r)]
        return max(good, key=lambda r: (r["caught"], -r["alerts_per_100_pd"])) if good else None

    gated = [h for h in held if h["tau"] > 0]        # tau 0 queues every rule alert
    acceptance = {"target_alerts_per_100_pd": BURDEN_TARGET, "rules_caught": rules["caught"],
                  "rules_within_target": within(rules),
                  "held": best(gated), "with_risk": best(with_risk),
                  "closest_held": closest(gated), "closest_with_risk": closest(with_risk)}
    acceptance["met"] = acceptance["held"] is not None or acceptance["with_risk"] is not None
    return {"rules": rules, "held": held, "with_risk": with_risk,
            "unknown_risk_alerts": int(ep["risk"].is_null().sum()), "acceptance": acceptance}


def rules_ordinal() -> pl.Expr:
    """3 when a high-severity alert is open, 2 medium, 1 low, 0 none (an expression)."""
    return (pl.when(pl.col("open_high") > 0).then(3)
            .when(pl.col("open_medium") > 0).then(2)
            .when(pl.col("open_low") > 0).then(1).otherwise(0).cast(pl.Float64))


# -- training seeds ---------------------------------------------------------------------------

def _seeds_in(obj) -> set[int]:
    out: set[int] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "seed" and isinstance(v, int) and not isinstance(v, bool):
                out.add(v)
            else:
                out |= _seeds_in(v)
    elif isinstance(obj, list):
        for v in obj:
            out |= _seeds_in(v)
    return out


def training_seeds(card: dict) -> dict[int, str]:
    """Every seed the card ties to its training: seed -> where it was read."""
    training = card.get("training") or {}
    found: dict[int, str] = {}
    for s in _seeds_in(training):
        found.setdefault(s, "card training.seed")
    for m in re.finditer(r"--seed[= ]+(\d+)", str(training.get("command", ""))):
        found.setdefault(int(m.group(1)), "card training.command")
    cohort = training.get("cohort")
    if cohort:
        try:
            from engine.synth import read_generator_record
            record, _ = read_generator_record(cohort)
            found.setdefault(int(record["seed"]), f"{cohort}/generator.json")
        except Exception:  # the training cohort is not on this machine: the card is all we have
            pass
    return found


def check_seeds(seeds: dict[str, list[int]], card: dict) -> dict[int, str]:
    """The training seeds of ``card`` (:func:`training_seeds`); a :class:`SystemExit` naming
    them when a held-out cohort would use one."""
    trained = training_seeds(card)
    clash = sorted({s for ss in seeds.values() for s in ss if s in trained})
    if clash:
        raise SystemExit(f"refused: seed(s) {clash} were used to train the model "
                         f"({', '.join(trained[s] for s in clash)}); held-out cohorts need "
                         "other seeds (--base-seed)")
    return trained


# -- cohorts ----------------------------------------------------------------------------------

@dataclass
class CohortRun:
    group: str
    variant: str
    seed: int
    #: every grid time: patient_id (cohort-qualified), ts, news2, rules, model, baseline, y
    #: (null in the recovery time left out)
    grid: pl.DataFrame
    episodes: pl.DataFrame
    events: pl.DataFrame
    patient_days: float
    patients: int
    left_out: int
    seconds: dict = field(default_factory=dict)


def run_cohort(folder: Path, group: str, variant: str, seed: int, patients: int, days: int,
               model, baseline, forbidden_sha: str | None,
               horizon: dt.timedelta = HORIZON) -> CohortRun:
    from engine.backtest import patient_days
    from engine.risk.train import DETERIORATION_EVENTS, cohort_features, label
    from engine.synth import write_cohort

    t0 = time.perf_counter()
    paths = write_cohort(folder, patients=patients, days=days, seed=seed, variant=variant)
    if forbidden_sha and file_sha256(paths["telemetry"]) == forbidden_sha:
        raise SystemExit(f"refused: the {variant} cohort of seed {seed} is the training "
                         "cohort, byte for byte")
    t1 = time.perf_counter()
    frame, episodes, _ = cohort_features(str(paths["telemetry"]), str(paths["patients"]))
    t2 = time.perf_counter()
    events = pl.read_parquet(paths["events"])
    labelled, dropped = label(frame.with_row_index("_i"), events, horizon=horizon)
    p_model = model.predict(frame)
    p_base = baseline.predict(frame)
    t3 = time.perf_counter()
    key = f"{variant}-{seed}:"
    grid = (frame.select("patient_id", "ts", "news2", "open_high", "open_medium", "open_low")
            .with_columns(rules=rules_ordinal(),
                          model=pl.Series(p_model, dtype=pl.Float64),
                          baseline=pl.Series(p_base, dtype=pl.Float64))
            .with_row_index("_i")
            .join(labelled.select("_i", "y"), on="_i", how="left")
            .drop("_i", "open_high", "open_medium", "open_low")
            .with_columns(patient_id=key + pl.col("patient_id")))
    telemetry = pl.read_parquet(paths["telemetry"], columns=["patient_id", "ts"])
    pts = pl.read_parquet(paths["patients"])
    pdays = float(patient_days(telemetry, pts)["days"].sum())
    ev = (events.filter(pl.col("event_type").is_in(list(DETERIORATION_EVENTS)))
          .select(pl.lit(key).add(pl.col("patient_id")).alias("patient_id"), "event_type",
                  "event_time"))
    ep = episodes.select(pl.lit(key).add(pl.col("patient_id")).alias("patient_id"), "pack",
                         "rule_id", "severity", "opened_at",
                         pl.col("resolved_at").alias("closed_at"))
    return CohortRun(group, variant, seed, grid, ep, ev, pdays, pts.height, dropped,
                     {"generate_s": t1 - t0, "features_s": t2 - t1, "score_s": t3 - t2})


# -- one group --------------------------------------------------------------------------------

def evaluate_group(runs: list[CohortRun], resamples: int, boot_seed: int,
                   horizon: dt.timedelta = HORIZON) -> dict:
    from sklearn.metrics import roc_auc_score

    from engine.risk.train import metrics

    grid = pl.concat([r.grid for r in runs])
    episodes = pl.concat([r.episodes for r in runs])
    events = pl.concat([r.events for r in runs])
    pdays = sum(r.patient_days for r in runs)
    rows = grid.filter(pl.col("y").is_not_null())
    ids = grid["patient_id"].unique().sort()
    code = rows["patient_id"].replace_strict(ids, pl.Series(np.arange(ids.len())),
                                             return_dtype=pl.Int64).to_numpy()
    y = rows["y"].to_numpy().astype(int)
    news2 = rows["news2"].to_numpy()
    defined = np.isfinite(news2)
    scores = {"model": (rows["model"].to_numpy(), y, code),
              "baseline": (rows["baseline"].to_numpy(), y, code),
              "news2": (np.where(defined, news2, 0.0), y, code),
              "news2_defined": (news2[defined], y[defined], code[defined]),
              "model_news2_rows": (rows["model"].to_numpy()[defined], y[defined],
                                   code[defined]),
              "rules": (rows["rules"].to_numpy(), y, code)}
    boot = bootstrap(scores, ids.len(), resamples, boot_seed, pairs=PAIRS)
    for name in ("model", "baseline"):
        m = metrics(y, scores[name][0])
        boot["scores"][name].update({k: m.get(k) for k in
                                     ("brier", "calibration_slope", "calibration_intercept")})
        boot["scores"][name]["mean_predicted"] = float(scores[name][0].mean())
    boot["scores"]["news2_defined"]["share_of_rows"] = float(defined.mean())
    # event level at fixed operating points, every grid time counting (recovery included)
    ops = []
    for name in ("model", "baseline"):
        for thr in THRESHOLDS:
            ops.append({"score": name, "threshold": thr,
                        **summarise(events, risk_openings(grid, name, thr), pdays, horizon)})
    for trig in NEWS2_TRIGGERS:
        ops.append({"score": "news2", "threshold": trig,
                    **summarise(events, risk_openings(grid, "news2", trig), pdays, horizon)})
    ops.append({"score": "rules", "threshold": None,
                **summarise(events, episodes.select(ALERT_COLUMNS), pdays, horizon)})
    high = episodes.filter(pl.col("severity") == "high")
    ops.append({"score": "rules_high", "threshold": None,
                **summarise(events, high.select(ALERT_COLUMNS), pdays, horizon)})
    queue = queue_tradeoff(episodes, events, grid, pdays, horizon=horizon)
    per_cohort = []
    for r in runs:
        rr = r.grid.filter(pl.col("y").is_not_null())
        yy = rr["y"].to_numpy().astype(int)
        per_cohort.append({
            "variant": r.variant, "seed": r.seed, "patients": r.patients,
            "grid_times": r.grid.height, "labelled": rr.height, "left_out_in_recovery":
            r.left_out, "positives": int(yy.sum()), "events": r.events.height,
            "rule_alerts": r.episodes.height, "patient_days": r.patient_days,
            "auroc_model": float(roc_auc_score(yy, rr["model"].to_numpy()))
            if 0 < yy.sum() < yy.size else None,
            "auroc_news2": float(roc_auc_score(yy, rr["news2"].fill_null(0).to_numpy()))
            if 0 < yy.sum() < yy.size else None,
            "seconds": r.seconds})
    return {"cohorts": per_cohort, "patients": int(ids.len()), "grid_times": grid.height,
            "labelled": rows.height, "positives": int(y.sum()),
            "prevalence": float(y.mean()) if y.size else None,
            "events": events.height, "patient_days": pdays,
            "events_by_type": dict(events.group_by("event_type").len().sort("event_type")
                                   .iter_rows()),
            "row_level": boot, "operating_points": ops, "queue": queue,
            "_plot": {"y": y, "scores": {k: v[0] for k, v in scores.items()
                                         if k in ("model", "baseline", "news2", "rules")}}}


# -- report -----------------------------------------------------------------------------------

def _ci(point, ci, digits=3):
    if point is None or not np.isfinite(point):
        return "–"
    return f"{point:.{digits}f} ({ci[0]:.{digits}f}–{ci[1]:.{digits}f})"


def _num(v, fmt="{:.3f}"):
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else fmt.format(v)


def _pct(v):
    return "–" if v is None else f"{100 * v:.0f} %"


def _tau(t):
    return "high only" if not np.isfinite(t) else f"{100 * t:g} %"


def seed_list(seeds: dict) -> str:
    """``{seed: where}`` in words, in seed order, runs of consecutive seeds read in the same
    place as one range (a randomised training cohort has one seed per part).

    >>> seed_list({"11": "card", "0": "card", "11002": "card", "11001": "card", "11003": "c"})
    '0 (card), 11 (card), 11001–11002 (card), 11003 (c)'
    """
    items = sorted((int(s), w) for s, w in seeds.items())
    runs: list[list] = []
    for s, w in items:
        if runs and runs[-1][1] == s - 1 and runs[-1][2] == w:
            runs[-1][1] = s
        else:
            runs.append([s, s, w])
    return ", ".join(f"{a} ({w})" if a == b else f"{a}–{b} ({w})" for a, b, w in runs)


def markdown(report: dict) -> str:
    cfg = report["config"]
    lines = ["# Risk model quality on held-out synthetic cohorts",
             "",
             f"Model `{cfg['model']}` ({report['model']['name']}, sha256 "
             f"{report['model']['sha256'][:12]}…); seeds tied to its training, refused here: "
             f"{seed_list(report['model']['training_seeds'])}."
             f" Cohorts: {cfg['patients']} patients × {cfg['days']} days each; "
             f"{cfg['resamples']} patient-bootstrap resamples (seed {cfg['bootstrap_seed']}); "
             "95 % percentile intervals. Synthetic data: this measures what the pipeline "
             "learns from the generator's planted signals, not performance on real patients.",
             ""]
    hz = f"{cfg['horizon_h']:g} h"
    for gkey, g in report["groups"].items():
        title = GROUPS[gkey][1]
        seeds = ", ".join(str(c["seed"]) for c in g["cohorts"])
        lines += [f"## {title} (seeds {seeds})", "",
                  f"{g['patients']} patients, {g['patient_days']:.0f} patient-days, "
                  f"{g['labelled']} labelled grid times ({g['grid_times'] - g['labelled']} left "
                  f"out in the 72 h after an event), {g['positives']} positive (an event "
                  f"within {hz}; prevalence {100 * g['prevalence']:.2f} %), "
                  f"{g['events']} deterioration events.", "",
                  "| score | AUROC (95 % CI) | AUPRC (95 % CI) | Brier | calibration slope | "
                  "calibration intercept | mean predicted / observed |",
                  "|---|---|---|---:|---:|---:|---:|"]
        sc = g["row_level"]["scores"]
        for name in SCORES:
            s = sc[name]
            label = SCORE_TITLES[name]
            if name == "news2_defined":
                label += (f": {s['n']} rows ({100 * s['share_of_rows']:.1f} %), "
                          f"{s['positives']} positive, {s['patients']} patients")
            mean = s.get("mean_predicted")
            calib = "–" if mean is None else \
                f"{100 * mean:.2f} % / {100 * g['prevalence']:.2f} %"
            lines.append(f"| {label} | {_ci(s['auroc'], s['auroc_ci'])} | "
                         f"{_ci(s['auprc'], s['auprc_ci'])} | {_num(s.get('brier'), '{:.4f}')} | "
                         f"{_num(s.get('calibration_slope'), '{:.2f}')} | "
                         f"{_num(s.get('calibration_intercept'), '{:.2f}')} | {calib} |")
        for k, d in g["row_level"]["differences"].items():
            lines.append(f"| AUROC difference {PAIR_TITLES.get(k, k)} (paired) | "
                         f"{d['auroc_difference']:+.3f} ({d['ci'][0]:+.3f} to {d['ci'][1]:+.3f}) "
                         "| | | | | |")
        lines += ["", f"Event level (an event is caught when an alert opens in the {hz} before "
                  "it; burden counts alert openings; the last column also counts an alert "
                  "opened earlier and still open in the window):", "",
                  "| alerting | events caught | sensitivity | alerts / 100 patient-days | "
                  "median lead time | alert open in window |", "|---|---:|---:|---:|---:|---:|"]
        for o in g["operating_points"]:
            if o["score"] in ("model", "baseline"):
                label = f"{SCORE_TITLES[o['score']]} ≥ {100 * o['threshold']:g} %"
            elif o["score"] == "news2":
                label = f"NEWS2 ≥ {o['threshold']}"
            elif o["score"] == "rules":
                label = "rule packs alone (any episode)"
            else:
                label = "rule packs, high severity only"
            lines.append(f"| {label} | {o['caught']}/{o['events']} | {_pct(o['sensitivity'])} | "
                         f"{_num(o['alerts_per_100_pd'], '{:.1f}')} | "
                         f"{_num(o['median_lead_h'], '{:.1f} h')} | "
                         f"{o['open_in_window']}/{o['events']} |")
        q = g["queue"]
        r = q["rules"]
        lines += ["", "The queue with risk: high-severity rule alerts always queued, medium and "
                  "low ones only when the model's risk at their opening is ≥ τ "
                  f"(rule packs alone: {r['alerts_per_100_pd']:.1f} alerts / 100 patient-days, "
                  f"{r['caught']}/{r['events']} events caught):", "",
                  "| τ | rule alerts queued | alerts / 100 patient-days | events caught | "
                  "sensitivity | median lead time | alert open in window |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for h in q["held"]:
            lines.append(f"| {_tau(h['tau'])} | {_pct(h['share_of_rule_alerts'])} | "
                         f"{h['alerts_per_100_pd']:.1f} | {h['caught']}/{h['events']} | "
                         f"{_pct(h['sensitivity'])} | {_num(h['median_lead_h'], '{:.1f} h')} | "
                         f"{h['open_in_window']}/{h['events']} |")
        lines += ["", "With risk-only alerts (the risk rising to θ opens an alert of its own), "
                  "alerts / 100 patient-days · events caught:", "",
                  "| τ | " + " | ".join(f"θ = {100 * t:g} %" for t in THETAS) + " |",
                  "|---|" + "---:|" * len(THETAS)]
        for tau in TAUS:
            cells = [w for w in q["with_risk"] if w["tau"] == tau]
            lines.append(f"| {_tau(tau)} | " + " | ".join(
                f"{w['alerts_per_100_pd']:.1f} · {w['caught']}/{w['events']}" for w in cells)
                + " |")
        acc = q["acceptance"]
        lines += ["", f"**Acceptance ({title}):** " + verdict(acc, r), ""]
    lines += ["## Acceptance", "",
              f"Some τ (or τ, θ) gives ≤ {BURDEN_TARGET:g} alerts / 100 patient-days while "
              "catching at least as many events as the rule packs alone (τ = 0, which queues "
              "every rule alert, does not count):", ""]
    n_policies = len(TAUS) - 1 + len(TAUS) * len(THETAS)
    for gkey, g in report["groups"].items():
        acc = g["queue"]["acceptance"]
        lines.append(f"- {GROUPS[gkey][1]}: **{'met' if acc['met'] else 'not met'}** (the best "
                     f"of {n_policies} policies, chosen on these same cohorts: optimistic)")
    t = report.get("transfer")
    if t:
        pol = f"τ = {_tau(t['policy']['tau'])}" + (
            f", θ = {100 * t['policy']['theta']:g} %" if t["policy"]["theta"] is not None
            else "")
        r, sr = t["on_shifted"], t["shifted_rules"]
        lines.append(f"- chosen on the default variant ({pol}), applied unchanged to the "
                     f"shifted variant: {r['alerts_per_100_pd']:.1f} alerts / 100 "
                     f"patient-days, {r['caught']}/{r['events']} events caught (rules alone "
                     f"{sr['caught']}/{sr['events']} at {sr['alerts_per_100_pd']:.1f}): "
                     f"**{'met' if t['met'] else 'not met'}** — the pre-specified test")
    elif "default" in report["groups"] and "shifted" in report["groups"]:
        lines.append("- no policy meets the target on the default variant, so none is carried "
                     "to the shifted variant")
    return "\n".join(lines)


def transfer(groups: dict) -> dict | None:
    """The policy that meets the acceptance on the default-variant group at the lowest burden
    (held queue or with risk-only alerts), applied unchanged to the shifted group: a choice made
    on one cohort group and tested on another, unlike the per-group search."""
    if "default" not in groups or "shifted" not in groups:
        return None
    acc = groups["default"]["queue"]["acceptance"]
    chosen = [c for c in (acc["held"], acc["with_risk"]) if c]
    if not chosen:
        return None
    pick = min(chosen, key=lambda r: r["alerts_per_100_pd"])
    theta = pick.get("theta")
    q = groups["shifted"]["queue"]
    if theta is None:
        row = next(h for h in q["held"] if h["tau"] == pick["tau"])
    else:
        row = next(w for w in q["with_risk"] if w["tau"] == pick["tau"] and w["theta"] == theta)
    met = (row["alerts_per_100_pd"] <= BURDEN_TARGET and row["caught"] >= q["rules"]["caught"])
    return {"policy": {"tau": pick["tau"], "theta": theta}, "on_default": pick,
            "on_shifted": row, "shifted_rules": q["rules"], "met": met}


def verdict(acc: dict, rules: dict) -> str:
    """The acceptance in words: rules alone, the held queue (tau > 0), with risk-only alerts."""
    target = f"≤ {BURDEN_TARGET:g} alerts / 100 patient-days"
    parts = [f"{'MET' if acc['met'] else 'NOT MET'}. Rule packs alone: "
             f"{rules['alerts_per_100_pd']:.1f} alerts / 100 patient-days, "
             f"{rules['caught']}/{rules['events']} events caught "
             f"({'already' if acc['rules_within_target'] else 'not'} within {target})"]

    def say(r, what):
        extra = f"θ = {100 * r['theta']:g} %, " if "theta" in r else ""
        return (f"{what} τ = {_tau(r['tau'])}, {extra}{r['alerts_per_100_pd']:.1f} alerts / 100 "
                f"patient-days, {r['caught']}/{r['events']} caught")

    if acc["held"]:
        parts.append(say(acc["held"], "held queue: yes at"))
    elif acc["closest_held"]:
        c = acc["closest_held"]
        parts.append(say(c, f"held queue: no τ > 0 keeps the rules' {rules['caught']} events "
                            f"within {target}; the closest is") +
                     f" ({c['caught'] - rules['caught']:+d} events)")
    else:
        parts.append(f"held queue: no τ > 0 is within {target}")
    if acc["with_risk"]:
        parts.append(say(acc["with_risk"], "with risk-only alerts: yes at"))
    elif acc["closest_with_risk"]:
        c = acc["closest_with_risk"]
        parts.append(say(c, "with risk-only alerts: no; the closest is") +
                     f" ({c['caught'] - rules['caught']:+d} events)")
    else:
        parts.append(f"with risk-only alerts: nothing within {target}")
    return "; ".join(parts) + "."


# -- plots ------------------------------------------------------------------------------------

def plots(report: dict, out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    plt.rcParams["svg.hashsalt"] = "veille-quality"
    written = []
    hz = f"{report['config']['horizon_h']:g} h"
    for gkey, g in report["groups"].items():
        title = GROUPS[gkey][1]
        y, sc = g["_plot"]["y"], g["_plot"]["scores"]
        rl = g["row_level"]["scores"]
        fig, ax = plt.subplots(figsize=(5.5, 5.2))
        for name, style in (("model", "-"), ("baseline", "--"), ("news2", "-."),
                            ("rules", ":")):
            fpr, tpr, _ = roc_curve(y, sc[name])
            ax.plot(fpr, tpr, style, label=f"{SCORE_TITLES[name]} (AUROC {rl[name]['auroc']:.3f})")
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8)
        ax.set(xlabel="false-positive rate (1 − specificity), share of negative grid times",
               ylabel="true-positive rate (sensitivity), share of positive grid times",
               title=f"ROC, {title}", xlim=(0, 1), ylim=(0, 1))
        ax.legend(loc="lower right", fontsize=7)
        written.append(_save(fig, out / f"roc_{gkey}.svg"))

        fig, axes = plt.subplots(1, 2, figsize=(10, 5))
        top, low = 0.0, 1.0
        for name, marker in (("model", "o"), ("baseline", "s")):
            mp, ob = reliability(sc[name], y)
            top = max(top, mp.max(), ob.max())
            low = min(low, *mp[mp > 0], *ob[ob > 0])
            label = (f"{SCORE_TITLES[name]} (slope {rl[name]['calibration_slope']:.2f}, "
                     f"intercept {rl[name]['calibration_intercept']:.2f})")
            axes[0].plot(100 * mp, 100 * ob, marker=marker, label=label)
            axes[1].plot(100 * mp[ob > 0], 100 * ob[ob > 0], marker=marker, label=label)
        lim = 100 * top * 1.05
        axes[0].plot([0, lim], [0, lim], color="0.6", lw=0.8, label="perfect calibration")
        axes[0].set(xlabel="mean predicted risk in the decile bin (%)",
                    ylabel=f"observed event share within {hz} in the bin (%)",
                    title="linear scale", xlim=(0, lim), ylim=(0, lim))
        lo = 100 * low / 1.5
        axes[1].plot([lo, lim], [lo, lim], color="0.6", lw=0.8, label="perfect calibration")
        axes[1].set(xscale="log", yscale="log", xlim=(lo, lim), ylim=(lo, lim),
                    xlabel="mean predicted risk in the decile bin (%, log scale)",
                    ylabel=f"observed event share within {hz} (%, log scale)",
                    title="log scale (bins without an event left out)")
        for ax in axes:
            ax.legend(loc="upper left", fontsize=7)
        fig.suptitle(f"Calibration (deciles of predicted risk), {title}")
        written.append(_save(fig, out / f"calibration_{gkey}.svg"))

        fig, ax = plt.subplots(figsize=(6, 5))
        q = g["queue"]
        xs = [h["alerts_per_100_pd"] for h in q["held"]]
        ys = [100 * h["sensitivity"] for h in q["held"]]
        ax.plot(xs, ys, "o-", label="held queue (high always, medium/low if risk ≥ τ)")
        for h, x, yv in zip(q["held"], xs, ys):
            if h["tau"] not in ANNOTATED_TAUS:
                continue
            ax.annotate(f"τ {_tau(h['tau'])}", (x, yv), fontsize=6, xytext=(3, -8),
                        textcoords="offset points")
        for theta in THETAS:
            cells = [w for w in q["with_risk"] if w["theta"] == theta]
            ax.plot([w["alerts_per_100_pd"] for w in cells],
                    [100 * w["sensitivity"] for w in cells], ".--", lw=0.8, alpha=0.7,
                    label=f"held queue + risk-only alerts at θ = {100 * theta:g} %")
        r = q["rules"]
        ax.plot([r["alerts_per_100_pd"]], [100 * r["sensitivity"]], "k*", ms=14,
                label="rule packs alone")
        ax.axvline(BURDEN_TARGET, color="0.5", lw=0.8, ls=":",
                   label=f"target ≤ {BURDEN_TARGET:g} alerts / 100 patient-days")
        ax.set(xlabel="queue burden (alert openings per 100 patient-days)",
               ylabel=f"events caught: a queued alert opened in the {hz} before (%)",
               title=f"Queue trade-off, {title}", xlim=(0, None), ylim=(0, 100))
        ax.legend(loc="lower right", fontsize=6)
        written.append(_save(fig, out / f"tradeoff_{gkey}.svg"))
    return written


#: the tau values named on the trade-off plot (the others are points on the line)
ANNOTATED_TAUS = (0.0, 0.01, 0.02, 0.05, 0.10, 0.20, math.inf)


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Mean predicted and observed rate per quantile bin of ``p`` (bins merged where quantiles
    tie; empty bins left out)."""
    p, y = np.asarray(p, float), np.asarray(y, float)
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    if edges.size < 2:
        return np.array([p.mean()]), np.array([y.mean()])
    b = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, edges.size - 2)
    n = np.bincount(b, minlength=edges.size - 1)
    keep = n > 0
    mp = np.bincount(b, weights=p, minlength=edges.size - 1)[keep] / n[keep]
    ob = np.bincount(b, weights=y, minlength=edges.size - 1)[keep] / n[keep]
    return mp, ob


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return path


# -- driver -----------------------------------------------------------------------------------

def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else ("inf" if v > 0 else None)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def site_recalibration(tmp: Path, seeds: list[int], model, horizon: dt.timedelta) -> dict:
    """What a site does with the model: refit its calibration on its own labelled history
    (`veille train --recalibrate`, trees unchanged) — here the first shifted cohort — and
    measure it on patients it never saw (the second shifted cohort), against the model as
    shipped on the same rows."""
    from engine.risk.model import RiskModel
    from engine.risk.train import cohort_features, label, metrics, recalibrate

    src, dst = tmp / f"shifted-{seeds[0]}", tmp / f"shifted-{seeds[1]}"
    out = tmp / "recalibrated"
    recalibrate(Path(model.loaded.directory), src, out, seed=0, command="benchmarks.quality")
    recal = RiskModel.load(out)
    frame, _, _ = cohort_features(str(dst / "telemetry.parquet"), str(dst / "patients.parquet"))
    labelled, _ = label(frame, pl.read_parquet(dst / "events.parquet"), horizon=horizon)
    y = labelled["y"].to_numpy()
    out_ = {"fitted_on_seed": seeds[0], "evaluated_on_seed": seeds[1]}
    for key, m in (("as_shipped", model), ("recalibrated", recal)):
        p = m.predict(labelled)
        out_[key] = {**metrics(y, p), "mean_predicted": float(np.mean(p))}
    return out_


def recalibration_markdown(r: dict) -> str:
    rows = ["", "## Recalibrated on the site's own history (shifted variant)", "",
            f"`veille train COHORT --recalibrate MODEL` refits only the calibration (Platt "
            f"scaling, trees unchanged) on a site's labelled history: here the shifted cohort "
            f"of seed {r['fitted_on_seed']} (80 % of its patients), measured on the shifted "
            f"cohort of seed {r['evaluated_on_seed']}, which neither step saw.", "",
            "| model | AUROC | Brier | calibration slope | calibration intercept | "
            "mean predicted / observed |", "|---|---:|---:|---:|---:|---:|"]
    for key, title in (("as_shipped", "as shipped"), ("recalibrated", "recalibrated")):
        m = r[key]
        rows.append(f"| {title} | {m['auroc']:.3f} | {m['brier']:.4f} | "
                    f"{m['calibration_slope']:.2f} | {m['calibration_intercept']:.2f} | "
                    f"{100 * m['mean_predicted']:.2f} % / {100 * m['prevalence']:.2f} % |")
    return "\n".join(rows)


def run(model_path: str, patients: int, days: int, seeds: dict[str, list[int]],
        resamples: int, boot_seed: int, out: Path, log=print) -> dict:
    from engine.risk.model import RiskModel

    t_start = time.perf_counter()
    model = RiskModel.load(model_path)
    base_dir = Path(model.loaded.directory) / "baseline"
    if not (base_dir / "card.json").is_file():
        raise SystemExit(f"refused: the model has no logistic baseline beside it ({base_dir})")
    baseline = RiskModel.load(base_dir)
    trained = check_seeds(seeds, model.card)
    if not trained:
        log("warning: the model card names no training seed; held-out seeds cannot be checked")
    forbidden_sha = (model.card.get("training") or {}).get("telemetry_sha256")
    # labels and event windows use the model's own horizon (48 h for the bundled one)
    horizon = model.horizon
    report = {"config": {"model": model_path, "patients": patients, "days": days,
                         "seeds": seeds, "resamples": resamples, "bootstrap_seed": boot_seed,
                         "horizon_h": horizon / dt.timedelta(hours=1),
                         "thresholds": THRESHOLDS, "news2_triggers": NEWS2_TRIGGERS,
                         "taus": TAUS, "thetas": THETAS, "burden_target": BURDEN_TARGET},
              "model": {"name": model.name, "sha256": model.sha256,
                        "baseline_sha256": baseline.sha256,
                        "training_seeds": {str(k): v for k, v in trained.items()},
                        "training_command": (model.card.get("training") or {}).get("command"),
                        "test_split_metrics": model.card.get("metrics_test_split")},
              "groups": {}}
    with tempfile.TemporaryDirectory(prefix="veille-quality-") as tmp:
        for gkey, (variant, title) in GROUPS.items():
            runs = []
            for seed in seeds[gkey]:
                t = time.perf_counter()
                runs.append(run_cohort(Path(tmp) / f"{variant}-{seed}", gkey, variant, seed,
                                       patients, days, model, baseline, forbidden_sha,
                                       horizon))
                log(f"  {variant} seed {seed}: {runs[-1].grid.height} grid times, "
                    f"{runs[-1].events.height} events, {runs[-1].episodes.height} rule alerts "
                    f"({time.perf_counter() - t:.0f} s)")
            t = time.perf_counter()
            report["groups"][gkey] = evaluate_group(runs, resamples, boot_seed, horizon)
            log(f"{title}: evaluated in {time.perf_counter() - t:.0f} s")
        if len(seeds.get("shifted", [])) >= 2:
            t = time.perf_counter()
            report["recalibration"] = site_recalibration(Path(tmp), seeds["shifted"], model,
                                                         horizon)
            log(f"site recalibration: {time.perf_counter() - t:.0f} s")
    report["transfer"] = transfer(report["groups"])
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    if "recalibration" in report:
        text += "\n" + recalibration_markdown(report["recalibration"])
    (out / "quality.md").write_text(text + "\n", encoding="utf-8")
    files = [out / "quality.md", out / "quality.json"]
    files += plots(report, out)
    report["wall_s"] = time.perf_counter() - t_start
    report["files"] = [str(p) for p in files]
    (out / "quality.json").write_text(json.dumps(_jsonable(report), indent=1) + "\n",
                                      encoding="utf-8")
    report["markdown"] = text
    return report


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default",
                    help="model folder written by `veille train`, or 'default' (bundled)")
    ap.add_argument("--patients", type=int, default=600, help="patients per cohort")
    ap.add_argument("--days", type=int, default=42, help="days per cohort")
    ap.add_argument("--quick", action="store_true",
                    help="150 patients, 28 days, one seed per variant, 200 resamples")
    ap.add_argument("--resamples", type=int, default=None,
                    help="patient-bootstrap resamples (default 500; 200 with --quick)")
    ap.add_argument("--bootstrap-seed", type=int, default=0)
    ap.add_argument("--base-seed", type=int, default=1001,
                    help="cohort seeds: default variant base, base+1; shifted base+100, "
                         "base+101")
    ap.add_argument("--out", type=Path, default=None,
                    help="output folder (default benchmarks/results/quality, quick/ in it "
                         "with --quick)")
    a = ap.parse_args(argv)
    if a.quick:
        patients, days, n_seeds = 150, 28, 1
    else:
        patients, days, n_seeds = a.patients, a.days, 2
    resamples = a.resamples or (200 if a.quick else 500)
    if resamples < 200:
        ap.error("--resamples must be at least 200")
    seeds = {"default": [a.base_seed + i for i in range(n_seeds)],
             "shifted": [a.base_seed + 100 + i for i in range(n_seeds)]}
    out = a.out or (RESULTS / "quick" if a.quick else RESULTS)
    report = run(a.model, patients, days, seeds, resamples, a.bootstrap_seed, out,
                 log=lambda s: print(s, file=sys.stderr, flush=True))
    print(report["markdown"])
    print(f"\nwall time {report['wall_s']:.0f} s; written: "
          + ", ".join(str(Path(p).name) for p in report["files"]) + f" in {out}")


if __name__ == "__main__":
    main()
