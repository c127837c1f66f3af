"""Training the deterioration-risk model on a labelled cohort (``veille train``).

1. **Features** at every point of each patient's 4-hour grid, from the same detect, timeline
   and episodes stages ``veille score`` runs (:mod:`engine.risk.features`).
2. **Labels**: a grid time is positive when a labelled deterioration event
   (:data:`DETERIORATION_EVENTS`) of that patient happens after it, within the horizon (default
   48 h). Grid times in the :data:`RECOVERY` after an event are left out: the patient is being
   treated (often in hospital) and what follows says nothing about home monitoring.
3. **Split by patient** (a hash of the id and the seed): 60 % train, 20 % calibration, 20 %
   test, so no patient's times are on both sides.
4. **Models**: a scikit-learn gradient-boosting classifier (histogram trees, missing values
   handled natively: an absent device is information, not an error) and a logistic baseline
   (median imputation with missing-value indicators, standardised); each calibrated on the
   calibration split (Platt scaling on the frozen model), evaluated on the test split.
5. **The artifact** (:mod:`engine.risk.artifact`): the calibrated gradient-boosting model with
   its card — features, training cohort and its SHA-256, horizon, metrics of both models,
   library versions, intended use and limits; the calibrated logistic baseline in ``baseline/``
   beside it, in the same format, for the quality benchmark.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ..errors import InputError
from ..schema import TS_DTYPE
from ..sources import file_sha256
from . import features as F

#: labelled event types that are a clinical deterioration the model is trained to anticipate
#: (device silences and CPAP non-adherence are behaviours the rules already report)
DETERIORATION_EVENTS = (
    "hf_decompensation", "copd_exacerbation", "covid_deterioration", "hyperglycaemia",
    "hypoglycaemia_severe", "functional_decline", "malnutrition", "fall", "excess_weight_loss",
)
HORIZON = dt.timedelta(hours=48)
#: grid times this long after an event are not labelled (treatment, hospital stay)
RECOVERY = dt.timedelta(hours=72)
SPLITS = (("train", 0.6), ("calibration", 0.8), ("test", 1.0))

INTENDED_USE = (
    "Ranks patients followed by home telemonitoring by their estimated probability of a "
    "clinical deterioration (heart-failure decompensation, COPD exacerbation, COVID-19 "
    "worsening, severe hypo- or hyperglycaemia, functional decline, malnutrition, fall, excess "
    "post-bariatric weight loss) within the horizon, to order the calls of a coordination "
    "team within a severity tier. It supports, never replaces, the clinical rules and the "
    "team's judgement.")
LIMITS = (
    "Trained on a synthetic cohort (veille generate): its figures show that the pipeline "
    "learns and is calibrated on data of that kind, not that it predicts real patients. "
    "Retrain and evaluate on a site's own labelled history before any clinical use; check "
    "calibration again when the population, devices or event definitions change. Not a "
    "medical device; not validated for diagnosis.")


@dataclass
class Labelled:
    """A feature frame with its labels: ``frame`` has ``patient_id``, ``ts``, the features,
    ``y`` (0/1) and ``split``; rows in a recovery period are already left out."""

    frame: pl.DataFrame
    episodes: pl.DataFrame
    n_events: int
    left_out: int


def cohort_features(telemetry, patients, *, engine=None, as_of=None):
    """Features (:func:`engine.risk.features.assemble`), episodes and the run's as-of time of a
    cohort, through the stages ``veille score`` runs."""
    from ..detect import DetectorPlan
    from ..pipeline import Engine, check_as_of, cut_after, evaluate_packs, load_inputs, \
        require_usable

    engine = engine or Engine.from_paths(model=None)
    pack = F.features_pack()
    inputs = load_inputs(telemetry, patients)
    require_usable(inputs.ingest)
    until = check_as_of(as_of, inputs.ingest, inputs.now) if as_of is not None \
        else inputs.ingest.clean["ts"].max()
    clean, index, _ = cut_after(inputs.ingest, until)
    parts: list = []
    plan = DetectorPlan.of([*engine.ruleset.packs, pack])
    packs = [p for p in engine.ruleset.packs if "risk" not in p.reads]
    episodes = evaluate_packs(packs, clean, inputs.patients, until=until, index=index,
                              plan=plan, features=parts, features_pack=pack)
    return F.assemble(parts, episodes), episodes, until


def label(frame: pl.DataFrame, events: pl.DataFrame, *, horizon: dt.timedelta = HORIZON,
          recovery: dt.timedelta = RECOVERY,
          event_types=DETERIORATION_EVENTS) -> tuple[pl.DataFrame, int]:
    """``frame`` (``patient_id``, ``ts``, …) with ``y``: 1 when an event of ``event_types``
    happens in (ts, ts + horizon]; rows in [event, event + recovery] are dropped (the patient
    is being treated). Returns the labelled frame and the number of rows dropped."""
    ev = (events.filter(pl.col("event_type").is_in(list(event_types)))
          .select("patient_id", pl.col("event_time").cast(TS_DTYPE).alias("t"))
          .sort("patient_id", "t"))
    rows = frame.with_row_index("_row").sort("patient_id", "ts")
    nxt = rows.select("_row", "patient_id", (pl.col("ts") + pl.duration(microseconds=1))
                      .alias("ts")).join_asof(
        ev, left_on="ts", right_on="t", by="patient_id", strategy="forward",
        check_sortedness=False)
    prev = rows.select("_row", "patient_id", "ts").join_asof(
        ev, left_on="ts", right_on="t", by="patient_id", strategy="backward",
        check_sortedness=False)
    y = ((nxt["t"] - (nxt["ts"] - pl.duration(microseconds=1)) <= horizon)
         .fill_null(False).cast(pl.Int8))
    recovering = ((prev["ts"] - prev["t"]) <= recovery).fill_null(False) \
        & prev["t"].is_not_null()
    out = rows.with_columns(y=y.alias("y"), _drop=recovering).sort("_row")
    dropped = int(out["_drop"].sum())
    return out.filter(~pl.col("_drop")).drop("_row", "_drop"), dropped


def split_of(patient_ids: pl.Series, seed: int) -> pl.Series:
    """``train``, ``calibration`` or ``test`` per patient id: a hash of the id and the seed, so a
    patient's times are all on one side and the split does not depend on row order."""
    def u(pid: str) -> float:
        h = hashlib.sha256(f"{seed}\x1f{pid}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2.0 ** 64

    cuts = []
    for pid in patient_ids.to_list():
        v = u(pid)
        cuts.append(next(name for name, hi in SPLITS if v < hi))
    return pl.Series("split", cuts, pl.String)


def metrics(y: np.ndarray, p: np.ndarray) -> dict:
    """AUROC, AUPRC, Brier score, prevalence and the calibration slope and intercept (the
    logistic recalibration of y on logit(p): slope 1 and intercept 0 when calibrated)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    y = np.asarray(y).astype(int)
    p = np.clip(np.asarray(p, float), 1e-6, 1 - 1e-6)
    out = {"n": int(y.size), "positives": int(y.sum()), "prevalence": float(y.mean())}
    if 0 < y.sum() < y.size:
        out["auroc"] = float(roc_auc_score(y, p))
        out["auprc"] = float(average_precision_score(y, p))
        logit = np.log(p / (1 - p)).reshape(-1, 1)
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(logit, y)
        out["calibration_slope"] = float(lr.coef_[0, 0])
        out["calibration_intercept"] = float(lr.intercept_[0])
    out["brier"] = float(brier_score_loss(y, p))
    return out


def gradient_boosting(seed: int):
    """Shallow, strongly regularised trees: on a generator configuration never seen in
    training (benchmarks/quality.py's shifted cohorts) they kept a higher AUROC (0.84 against
    0.81) and a calibration slope nearer 1 (0.79 against 0.67) than 15-leaf trees, at the same
    AUROC on cohorts like the training one."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_iter=150, learning_rate=0.05, max_depth=3, min_samples_leaf=300,
        l2_regularization=10.0, early_stopping=False, random_state=seed)


def logistic_baseline(seed: int):
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True,
                                              keep_empty_features=True)),
                     ("scale", StandardScaler()),
                     ("model", LogisticRegression(C=0.1, max_iter=3000, random_state=seed))])


def calibrate(model, X: np.ndarray, y: np.ndarray):
    """Platt scaling of a fitted model on the calibration split (the model is frozen)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    return CalibratedClassifierCV(FrozenEstimator(model), method="sigmoid").fit(X, y)


def cohort_files(cohort, telemetry=None, patients=None, events=None) -> dict[str, Path]:
    """The telemetry, patients and events files of a labelled cohort: those given, else the
    folder's ``<name>.parquet``; each must exist."""
    files = {"telemetry": telemetry, "patients": patients, "events": events}
    for key, given in files.items():
        files[key] = Path(given) if given is not None else Path(cohort) / f"{key}.parquet"
        if not files[key].exists():
            raise InputError(f"the cohort has no {key} file (give --{key}).",
                             path=str(files[key]))
    return files


def _events(path, event_types) -> pl.DataFrame:
    """The labelled events of a cohort, any type kept; refused when none is of
    ``event_types`` (a site whose labels are named otherwise gives its own with
    ``--event-types``)."""
    from ..backtest import load_events

    events, _ = load_events(str(path), any_type=True)
    types = sorted(events["event_type"].unique().to_list())
    if not set(types) & set(event_types):
        raise InputError(f"no event is of a deterioration type the model is trained for "
                         f"({', '.join(event_types)}); the file has: "
                         f"{', '.join(types) or 'no event'}. Name the deterioration types "
                         "with --event-types.", path=str(path), column="event_type")
    return events


def _generator_record(folder: Path) -> dict | None:
    """The generator settings of a generated training cohort (its generator.json), so that the
    quality benchmark never evaluates on the training seed; None for a site's own history."""
    path = folder / "generator.json"
    if not path.is_file() or path.stat().st_size > 1 << 16:
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def prepare(telemetry, patients, events: pl.DataFrame, *, horizon=HORIZON, seed: int = 0,
            engine=None, event_types=DETERIORATION_EVENTS) -> Labelled:
    """Features, labels and the patient split of a labelled cohort."""
    frame, episodes, _ = cohort_features(telemetry, patients, engine=engine)
    labelled, dropped = label(frame, events, horizon=horizon, event_types=event_types)
    ids = labelled["patient_id"].unique(maintain_order=True)
    splits = pl.DataFrame({"patient_id": ids, "split": split_of(ids, seed)})
    labelled = labelled.join(splits, on="patient_id", how="left", maintain_order="left")
    n_events = int(events.filter(pl.col("event_type").is_in(list(event_types))).height)
    return Labelled(labelled, episodes, n_events, dropped)


def train(cohort: Path, out: Path, *, horizon: dt.timedelta = HORIZON, seed: int = 0,
          name: str | None = None, telemetry: Path | None = None, patients: Path | None = None,
          events: Path | None = None, command: str = "",
          event_types=DETERIORATION_EVENTS) -> dict:
    """Train, calibrate and evaluate on ``cohort`` (a folder with telemetry, patients and
    events Parquet files, as ``veille generate`` writes or a site exports) and write the
    artifact to ``out``. Returns the card."""
    from .artifact import library_versions, save_artifact

    files = cohort_files(cohort, telemetry, patients, events)
    if horizon <= dt.timedelta(0) or horizon > dt.timedelta(days=30):
        raise InputError(f"the horizon must be between 1 hour and 30 days. Got {horizon}.")
    ev = _events(files["events"], event_types)
    data = prepare(str(files["telemetry"]), str(files["patients"]), ev, horizon=horizon,
                   seed=seed, event_types=event_types)
    frame = data.frame
    parts = {s: frame.filter(pl.col("split") == s) for s, _ in SPLITS}
    for s, part in parts.items():
        if part.height == 0 or part["y"].sum() == 0 or part["y"].sum() == part.height:
            raise InputError(f"the {s} split has {part['y'].sum()} positive grid times out of "
                             f"{part.height}: the cohort is too small or has too few labelled "
                             "deterioration events to train on (generate more patients).",
                             path=str(files["events"]))
    X = {s: F.matrix(p) for s, p in parts.items()}
    y = {s: p["y"].to_numpy() for s, p in parts.items()}
    # a feature never known in the training split (a site without CGM) is constant for the
    # trees, which then never split on it (scikit-learn cannot bin an all-missing column)
    absent = np.isnan(X["train"]).all(axis=0)
    X["train"][:, absent] = 0.0
    gb = calibrate(gradient_boosting(seed).fit(X["train"], y["train"]),
                   X["calibration"], y["calibration"])
    lr = calibrate(logistic_baseline(seed).fit(X["train"], y["train"]),
                   X["calibration"], y["calibration"])
    test = {"gradient_boosting": metrics(y["test"], gb.predict_proba(X["test"])[:, 1]),
            "logistic_baseline": metrics(y["test"], lr.predict_proba(X["test"])[:, 1])}
    news2 = parts["test"]["news2"].fill_null(0).to_numpy()
    test["news2"] = {k: v for k, v in metrics(y["test"], news2 / 20.0).items()
                     if k in ("n", "positives", "prevalence", "auroc", "auprc")}
    card = {
        "name": name or Path(out).name,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": "scikit-learn HistGradientBoostingClassifier (150 trees of depth 3), "
                 "Platt-calibrated (CalibratedClassifierCV, sigmoid, on a frozen model)",
        "output": "calibrated probability of a labelled deterioration event within the "
                  "horizon, at each point of the patient's 4-hour grid",
        "horizon_hours": horizon / dt.timedelta(hours=1),
        "recovery_hours_left_out": RECOVERY / dt.timedelta(hours=1),
        "event_types": list(event_types),
        "features_file_sha256": file_sha256(F.FEATURES_FILE),
        "features_digest": F.features_digest(),
        "training": {
            "cohort": str(cohort),
            "telemetry_sha256": file_sha256(Path(files["telemetry"])),
            "patients_sha256": file_sha256(Path(files["patients"])),
            "events_sha256": file_sha256(Path(files["events"])),
            "command": command,
            "generator": _generator_record(Path(files["telemetry"]).parent),
            "seed": seed,
            "grid_times": frame.height,
            "grid_times_left_out_in_recovery": data.left_out,
            "features_never_known": [n for n, a in zip(F.feature_names(), absent) if a],
            "patients": {s: int(p["patient_id"].n_unique()) for s, p in parts.items()},
            "positives": {s: int(p["y"].sum()) for s, p in parts.items()},
            "deterioration_events": data.n_events,
            "split": "by patient: SHA-256 of seed and id; 60 % train, 20 % calibration, "
                     "20 % test",
        },
        "metrics_test_split": test,
        "libraries": library_versions(),
        "intended_use": INTENDED_USE,
        "limits": LIMITS,
    }
    save_artifact(Path(out), model=gb, features=list(F.feature_names()), card=card)
    # the logistic baseline beside it, in the same verified format, for the quality benchmark
    baseline = {**card, "name": f"{card['name']} (logistic baseline)",
                "model": "scikit-learn Pipeline(SimpleImputer(median, missing indicators), "
                         "StandardScaler, LogisticRegression(C=0.1)), Platt-calibrated",
                "intended_use": "The baseline the model is compared with (benchmarks/quality.py);"
                                " not for ranking patients."}
    save_artifact(Path(out) / "baseline", model=lr, features=list(F.feature_names()),
                  card=baseline)
    return json.loads((Path(out) / "card.json").read_text())


def _trained_card(card: dict) -> dict:
    """A loaded card without what :func:`engine.risk.artifact.save_artifact` writes anew (the
    model file, its hash, the features and the library versions)."""
    return {k: v for k, v in card.items()
            if k not in ("model_file", "model_sha256", "features", "libraries")}


def recalibrate(model: Path, cohort: Path, out: Path, *, seed: int = 0, name: str | None = None,
                telemetry: Path | None = None, patients: Path | None = None,
                events: Path | None = None, command: str = "") -> dict:
    """Refit the calibration of a trained model (and of its baseline) on a site's own labelled
    history, the trees unchanged: a model moved to another population ranks patients as well
    but its probabilities drift with the prevalence and the signals' strength there.

    The cohort's patients are split by patient (the seed's hash): 80 % refit the Platt scaling,
    20 % measure it, before and after. Writes a new artifact to ``out``; returns its card."""
    from .artifact import library_versions, load_artifact, save_artifact
    from .model import fitted_model

    files = cohort_files(cohort, telemetry, patients, events)
    names = list(F.feature_names())
    base = load_artifact(Path(model), expected_features=names)
    baseline_dir = Path(model) / "baseline"
    baseline = load_artifact(baseline_dir, expected_features=names) \
        if (baseline_dir / "card.json").exists() else None
    horizon = dt.timedelta(hours=float(base.card.get("horizon_hours", 48)))
    event_types = tuple(base.card.get("event_types") or DETERIORATION_EVENTS)
    ev = _events(files["events"], event_types)
    data = prepare(str(files["telemetry"]), str(files["patients"]), ev, horizon=horizon,
                   seed=seed, event_types=event_types)
    frame = data.frame
    fit = frame.filter(pl.col("split") != "test")
    test = frame.filter(pl.col("split") == "test")
    for label_, part in (("recalibration", fit), ("test", test)):
        if part.height == 0 or part["y"].sum() == 0 or part["y"].sum() == part.height:
            raise InputError(f"the {label_} part of the cohort has {part['y'].sum()} positive "
                             f"grid times out of {part.height}: too few labelled deterioration "
                             "events to recalibrate on.", path=str(files["events"]))
    Xf, yf = F.matrix(fit), fit["y"].to_numpy()
    Xt, yt = F.matrix(test), test["y"].to_numpy()

    def refit(loaded):
        new = calibrate(fitted_model(loaded.model), Xf, yf)
        return new, {"before": metrics(yt, loaded.model.predict_proba(Xt)[:, 1]),
                     "after": metrics(yt, new.predict_proba(Xt)[:, 1])}

    gb, figures = refit(base)
    card = _trained_card(base.card)
    card.update({
        "name": name or Path(out).name,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "libraries": library_versions(),
        "recalibrated": {
            "from_model_sha256": base.sha256,
            "cohort": str(cohort),
            "telemetry_sha256": file_sha256(Path(files["telemetry"])),
            "patients_sha256": file_sha256(Path(files["patients"])),
            "events_sha256": file_sha256(Path(files["events"])),
            "command": command,
            "seed": seed,
            "generator": _generator_record(Path(files["telemetry"]).parent),
            "split": "by patient: 80 % refit the Platt scaling, 20 % measure it",
            "patients": {"recalibration": int(fit["patient_id"].n_unique()),
                         "test": int(test["patient_id"].n_unique())},
            "positives": {"recalibration": int(yf.sum()), "test": int(yt.sum())},
            "metrics_test_part": figures,
        },
    })
    save_artifact(Path(out), model=gb, features=names, card=card)
    if baseline is not None:
        lr, lr_figures = refit(baseline)
        bcard = _trained_card(baseline.card)
        bcard.update({"name": f"{card['name']} (logistic baseline)",
                      "libraries": library_versions(),
                      "recalibrated": {**card["recalibrated"],
                                       "from_model_sha256": baseline.sha256,
                                       "metrics_test_part": lr_figures}})
        save_artifact(Path(out) / "baseline", model=lr, features=names, card=bcard)
    return json.loads((Path(out) / "card.json").read_text())
