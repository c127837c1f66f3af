"""Scoring with the deterioration-risk model, and why: the risk stage.

:class:`RiskModel` wraps a verified artifact (:func:`engine.risk.artifact.load_artifact`): a
calibrated probability for every row of a feature frame, and for chosen rows the three
features that raised it most, in a nurse's words ("weight +2.1 kg over 3 days", "SpO2 3.0
points under usual"). The contributions are SHAP values of the gradient-boosting model (its
log-odds, before calibration: the calibration is monotonic, so it does not change which
features raised the risk), computed on its compiled trees (:mod:`engine.risk.treeshap`)
exactly as ``shap``'s tree explainer computes them.
"""
from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import polars as pl

from ..errors import InputError
from . import features as F

#: where ``--model default`` is (the bundled model, trained by the command in models/README.md)
DEFAULT_MODEL = "default"


def _num(v: float, digits: int, lang: str, signed: bool = False) -> str:
    text = f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"
    return text.replace(".", ",") if lang == "fr" else text


#: feature -> (decimals, signed, factor, English, French): "{v}" is the value times the factor
WORDS: dict[str, tuple[int, bool, float, str, str]] = {
    "hr_24h": (0, False, 1, "pulse {v} /min over 24 h", "pouls {v} /min sur 24 h"),
    "hr_usual": (0, False, 1, "usual pulse {v} /min", "pouls habituel {v} /min"),
    "hr_sd_3d": (0, False, 1, "pulse variability (SD) {v} /min over 3 days",
                 "variabilité du pouls (écart-type) {v} /min sur 3 jours"),
    "hr_slope_3d": (1, True, 24, "pulse trend {v} /min per day",
                    "tendance du pouls {v} /min par jour"),
    "hr_n_3d": (0, False, 1, "{v} pulse readings in 3 days", "{v} mesures du pouls en 3 jours"),
    "spo2_24h": (0, False, 1, "SpO2 {v} % over 24 h", "SpO2 {v} % sur 24 h"),
    "spo2_min_24h": (0, False, 1, "lowest SpO2 {v} % in 24 h",
                     "SpO2 la plus basse {v} % en 24 h"),
    "spo2_usual": (0, False, 1, "usual SpO2 {v} %", "SpO2 habituelle {v} %"),
    "spo2_sd_3d": (1, False, 1, "SpO2 variability (SD) {v} points over 3 days",
                   "variabilité de la SpO2 (écart-type) {v} points sur 3 jours"),
    "spo2_slope_3d": (1, True, 24, "SpO2 trend {v} points per day",
                      "tendance de la SpO2 {v} points par jour"),
    "spo2_n_3d": (0, False, 1, "{v} SpO2 readings in 3 days", "{v} mesures de SpO2 en 3 jours"),
    "rr_24h": (0, False, 1, "respiratory rate {v} /min over 24 h",
               "fréquence respiratoire {v} /min sur 24 h"),
    "rr_usual": (0, False, 1, "usual respiratory rate {v} /min",
                 "fréquence respiratoire habituelle {v} /min"),
    "rr_slope_3d": (1, True, 24, "respiratory rate trend {v} /min per day",
                    "tendance de la fréquence respiratoire {v} /min par jour"),
    "rr_n_3d": (0, False, 1, "{v} respiratory rate readings in 3 days",
                "{v} mesures de fréquence respiratoire en 3 jours"),
    "temp_24h": (1, False, 1, "temperature {v} °C over 24 h", "température {v} °C sur 24 h"),
    "temp_max_24h": (1, False, 1, "highest temperature {v} °C in 24 h",
                     "température maximale {v} °C en 24 h"),
    "temp_usual": (1, False, 1, "usual temperature {v} °C", "température habituelle {v} °C"),
    "sbp_24h": (0, False, 1, "systolic BP {v} mmHg over 24 h",
                "PA systolique {v} mmHg sur 24 h"),
    "sbp_usual": (0, False, 1, "usual systolic BP {v} mmHg", "PA systolique habituelle {v} mmHg"),
    "sbp_slope_3d": (1, True, 24, "systolic BP trend {v} mmHg per day",
                     "tendance de la PA systolique {v} mmHg par jour"),
    "weight_usual": (1, False, 1, "usual weight {v} kg", "poids habituel {v} kg"),
    "weight_last_2d": (1, False, 1, "weight {v} kg over 2 days", "poids {v} kg sur 2 jours"),
    "weight_change_3d": (1, True, 1, "weight {v} kg over 3 days", "poids {v} kg en 3 jours"),
    "weight_slope_7d": (1, True, 24 * 7, "weight trend {v} kg per week",
                        "tendance du poids {v} kg par semaine"),
    "weight_n_7d": (0, False, 1, "{v} weights in 7 days", "{v} pesées en 7 jours"),
    "glucose_24h": (0, False, 1, "mean glucose {v} mg/dL over 24 h",
                    "glycémie moyenne {v} mg/dL sur 24 h"),
    "glucose_sd_24h": (0, False, 1, "glucose variability (SD) {v} mg/dL over 24 h",
                       "variabilité glycémique (écart-type) {v} mg/dL sur 24 h"),
    "glucose_low_24h": (0, False, 1, "{v} min under 70 mg/dL in 24 h",
                        "{v} min sous 70 mg/dL en 24 h"),
    "glucose_high_24h": (0, False, 1, "{v} min over 250 mg/dL in 24 h",
                         "{v} min au-dessus de 250 mg/dL en 24 h"),
    "glucose_usual": (0, False, 1, "usual glucose {v} mg/dL", "glycémie habituelle {v} mg/dL"),
    "dyspnoea_3d": (0, False, 1, "breathlessness score {v} (worst of 3 days)",
                    "score d'essoufflement {v} (le pire sur 3 jours)"),
    "dyspnoea_usual": (0, False, 1, "usual breathlessness score {v}",
                       "score d'essoufflement habituel {v}"),
    "steps_3d": (0, False, 1, "steps {v} a day over 3 days", "{v} pas par jour sur 3 jours"),
    "steps_usual": (0, False, 1, "usual steps {v} a day", "pas habituels {v} par jour"),
    "cpap_3d": (1, False, 1, "CPAP use {v} h a night over 3 days",
                "PPC {v} h par nuit sur 3 jours"),
    "falls_7d": (0, False, 1, "{v} fall(s) in 7 days", "{v} chute(s) en 7 jours"),
    "hr_change": (0, True, 1, "pulse {v} /min vs usual", "pouls {v} /min par rapport à "
                  "l'habituel"),
    "rr_change": (0, True, 1, "respiratory rate {v} /min vs usual",
                  "fréquence respiratoire {v} /min par rapport à l'habituel"),
    "temp_change": (1, True, 1, "temperature {v} °C vs usual",
                    "température {v} °C par rapport à l'habituelle"),
    "sbp_change": (0, True, 1, "systolic BP {v} mmHg vs usual",
                   "PA systolique {v} mmHg par rapport à l'habituelle"),
    "weight_change": (1, True, 1, "weight {v} kg vs usual",
                      "poids {v} kg par rapport à l'habituel"),
    "glucose_change": (0, True, 1, "mean glucose {v} mg/dL vs usual",
                       "glycémie moyenne {v} mg/dL par rapport à l'habituelle"),
    "dyspnoea_change": (0, True, 1, "breathlessness score {v} vs usual",
                        "score d'essoufflement {v} par rapport à l'habituel"),
    "steps_change": (0, True, 1, "steps {v} a day vs usual",
                     "pas {v} par jour par rapport à l'habituel"),
    "news2": (0, False, 1, "NEWS2 {v}", "NEWS2 {v}"),
    "age": (0, False, 1, "age {v}", "âge {v} ans"),
    "open_high": (0, False, 1, "{v} high alert(s) open", "{v} alerte(s) haute(s) ouverte(s)"),
    "open_medium": (0, False, 1, "{v} medium alert(s) open",
                    "{v} alerte(s) moyenne(s) ouverte(s)"),
    "open_low": (0, False, 1, "{v} low alert(s) open", "{v} alerte(s) basse(s) ouverte(s)"),
    "opened_24h": (0, False, 1, "{v} alert(s) opened in 24 h",
                   "{v} alerte(s) ouverte(s) en 24 h"),
}
PROGRAMME_NAMES = {
    "heart_failure": ("heart failure", "insuffisance cardiaque"),
    "copd": ("COPD", "BPCO"), "diabetes": ("diabetes", "diabète"),
    "covid_home": ("COVID-19 home follow-up", "suivi COVID-19 à domicile"),
    "sleep_apnoea": ("sleep apnoea", "apnée du sommeil"),
    "post_bariatric": ("post-bariatric", "après chirurgie bariatrique"),
    "older_home": ("older person at home", "personne âgée à domicile"),
}
#: what an unknown value of a feature means, by the feature's prefix: (English, French)
_MISSING = {"hr": ("pulse", "pouls"), "spo2": ("SpO2", "SpO2"),
            "rr": ("respiratory rate", "fréquence respiratoire"),
            "temp": ("temperature", "température"), "sbp": ("blood pressure", "pression artérielle"),
            "consciousness": ("consciousness check", "vigilance"), "weight": ("weight", "poids"),
            "glucose": ("glucose", "glycémie"),
            "dyspnoea": ("breathlessness score", "score d'essoufflement"),
            "steps": ("step count", "nombre de pas"), "cpap": ("CPAP report", "rapport de PPC"),
            "falls": ("fall report", "déclaration de chute"),
            "news2": ("complete NEWS2 set", "NEWS2 complet"), "age": ("age", "âge"),
            "since": ("enrolment date", "date d'inclusion")}


def describe(feature: str, value: float, lang: str = "en") -> str:
    """The words for ``feature`` at ``value`` (NaN: unknown), in ``lang`` (``en`` or ``fr``:
    decimal comma)."""
    fr = lang == "fr"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        what = _MISSING.get(feature.split("_")[0], (feature.replace("_", " "),) * 2)
        return f"aucune mesure récente ({what[1]})" if fr else f"no recent {what[0]}"
    v = float(value)
    if feature in WORDS:
        digits, signed, factor, en, fr_text = WORDS[feature]
        return (fr_text if fr else en).replace("{v}", _num(v * factor, digits, lang, signed))
    if feature == "spo2_change":
        points = _num(abs(v), 1, lang)
        if fr:
            return f"SpO2 {points} points {'sous' if v < 0 else 'au-dessus de'} l'habituelle"
        return f"SpO2 {points} points {'under' if v < 0 else 'above'} usual"
    if feature == "silence_any":
        hours = v / 60.0
        span = (f"{_num(hours, 0, lang)} h" if hours < 48
                else f"{_num(hours / 24, 1, lang)} {'jours' if fr else 'days'}")
        return (f"aucune mesure d'aucun appareil depuis {span}" if fr
                else f"no reading from any device for {span}")
    if feature == "consciousness_max_24h":
        if v >= 1:
            return ("confusion nouvelle ou pire en 24 h (ACVPU)" if fr
                    else "new confusion or worse in 24 h (ACVPU)")
        return "vigilant (ACVPU) sur 24 h" if fr else "alert (ACVPU) over 24 h"
    if feature == "since_enrolment":
        day = math.floor(v) + 1
        return f"jour {day} du suivi" if fr else f"day {day} of follow-up"
    if feature.startswith("programme_"):
        en, fr_name = PROGRAMME_NAMES.get(feature[len("programme_"):], (feature,) * 2)
        if fr:
            return f"programme {fr_name}" if v else f"hors programme {fr_name}"
        return f"{en} programme" if v else f"not in the {en} programme"
    raise KeyError(f"no words for feature {feature!r}")


def fitted_model(calibrated):
    """The fitted model inside a calibrated one (``CalibratedClassifierCV`` of a
    ``FrozenEstimator``, as ``veille train`` saves it)."""
    est = calibrated.calibrated_classifiers_[0].estimator
    return getattr(est, "estimator", est)


#: rows of the feature frame :meth:`RiskModel.predict` turns into a matrix at a time
PREDICT_BLOCK_ROWS = 1 << 18


class RiskModel:
    """A loaded, verified risk model (see :func:`engine.risk.artifact.load_artifact`)."""

    def __init__(self, loaded, compiled=None):
        self.loaded = loaded
        self._model = loaded.model      # None when loaded from the cache: see .model
        self.card = loaded.card
        self.features = tuple(loaded.features)
        self._explainer = None
        self._fast = self._fast_for = None
        if compiled is not None:    # from the cache (engine.risk.compiled_cache): no model
            self._fast, self._fast_for = compiled, self._model
        self._compiled()            # the trees flattened at load

    @classmethod
    def load(cls, path: str | Path) -> "RiskModel":
        """Load the artifact folder ``path`` (``"default"``: the bundled model), checking its
        bytes, card, trusted types and features against this engine's."""
        from ..paths import bundled
        from .artifact import load_artifact

        from . import compiled_cache

        folder = bundled("models") / DEFAULT_MODEL if str(path) == DEFAULT_MODEL else Path(path)
        if not folder.is_dir():
            raise InputError("no risk model there: give a folder written by `veille train` "
                             "(model.skops and card.json), 'default' or 'none'.",
                             path=str(folder))
        expected = list(F.feature_names())
        cached = compiled_cache.load(folder, expected)
        if cached is not None:
            return cls(*cached)
        model = cls(load_artifact(folder, expected_features=expected))
        compiled_cache.store(model.loaded, model._compiled(), expected)
        return model

    @property
    def model(self):
        """The scikit-learn model. A model loaded from the cache reads (and checks) it on first
        access: only the references (:meth:`predict_reference`,
        :meth:`contributions_reference`) and models the compiled trees do not reproduce need
        it."""
        if self._model is None:
            from .artifact import load_artifact

            self.loaded = load_artifact(self.loaded.directory,
                                        expected_features=list(self.features))
            self._model = self._fast_for = self.loaded.model
        return self._model

    @model.setter
    def model(self, value) -> None:
        self._model = value             # compiled afresh on the next prediction

    @property
    def name(self) -> str:
        return str(self.card.get("name", self.loaded.directory))

    @property
    def sha256(self) -> str:
        return self.loaded.sha256

    @property
    def horizon(self) -> dt.timedelta:
        return dt.timedelta(hours=float(self.card.get("horizon_hours", 48)))

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Calibrated probability of an event within the horizon, per row of a feature frame:
        ``predict_proba``'s, bit for bit, from all trees in one compiled pass
        (:mod:`engine.risk.trees`) when the model is one it reproduces, else from
        scikit-learn (:meth:`predict_reference`)."""
        if frame.height == 0:
            return np.zeros(0)
        fast = self._compiled()
        # in blocks of rows (each row's probability is its own): the input matrix of a whole
        # 1e7-row run's grid would be a copy of every feature at once (about 650 MB)
        out = np.empty(frame.height)
        for a in range(0, frame.height, PREDICT_BLOCK_ROWS):
            part = frame.slice(a, PREDICT_BLOCK_ROWS)
            X = F.matrix(part)
            if fast is None or X.shape[1] != fast.n_features:
                return self.model.predict_proba(F.matrix(frame))[:, 1]
            out[a:a + part.height] = fast.predict(X)
        return out

    def predict_reference(self, frame: pl.DataFrame) -> np.ndarray:
        """:meth:`predict` by scikit-learn's ``predict_proba``: the reference."""
        if frame.height == 0:
            return np.zeros(0)
        return self.model.predict_proba(F.matrix(frame))[:, 1]

    def _compiled(self):
        """The model's trees flattened for :mod:`engine.risk.trees` (once per model object;
        None: scikit-learn predicts)."""
        if self._fast_for is not self._model:
            from .trees import compile_model

            self._fast, self._fast_for = compile_model(self._model), self._model
        return self._fast

    def _trees(self):
        """The gradient-boosting model inside the calibration wrapper."""
        return fitted_model(self.model)

    def contributions(self, frame: pl.DataFrame) -> np.ndarray:
        """SHAP values (log-odds, rows × features) of the gradient-boosting model: computed by
        :mod:`engine.risk.treeshap` on the compiled trees, ``shap.TreeExplainer``'s bit for bit
        (tested), without importing shap; by shap itself for a model the compiled trees do not
        reproduce (:meth:`contributions_reference`)."""
        X = F.matrix(frame)
        if X.shape[0] == 0:
            return np.zeros((0, len(self.features)))
        fast = self._compiled()
        if fast is not None and X.shape[1] == fast.n_features \
                and fast.parts[0][0].cover is not None:
            from .treeshap import shap_values

            return shap_values(fast.parts[0][0], X)
        return self.contributions_reference(frame)

    def contributions_reference(self, frame: pl.DataFrame) -> np.ndarray:
        """:meth:`contributions` by ``shap.TreeExplainer``: the reference."""
        import shap

        if self._explainer is None:
            self._explainer = shap.TreeExplainer(self._trees())
        X = F.matrix(frame)
        if X.shape[0] == 0:
            return np.zeros((0, len(self.features)))
        values = self._explainer.shap_values(X)
        return np.asarray(values[1] if isinstance(values, list) else values)

    def explain(self, frame: pl.DataFrame, top: int = 3, lang: str = "en") -> list[str]:
        """Per row, the ``top`` features that raised the risk most, in words (``lang``), joined
        by "; " (empty when no feature raised it)."""
        if frame.height == 0:
            return []
        contrib = self.contributions(frame)
        X = F.matrix(frame)
        out = []
        for i in range(contrib.shape[0]):
            order = np.argsort(-contrib[i], kind="stable")
            # a programme the patient is not in is not a reason a nurse can use
            words = [describe(self.features[j], X[i, j], lang) for j in order
                     if contrib[i, j] > 0 and not (self.features[j].startswith("programme_")
                                                   and X[i, j] == 0)][:top]
            out.append((" ; " if lang == "fr" else "; ").join(words))
        return out


RISK_COLUMNS = {"patient_id": pl.String, "ts": pl.Datetime("us", "UTC"), "risk": pl.Float64}


def score(model: RiskModel, features: pl.DataFrame) -> pl.DataFrame:
    """``patient_id``, ``ts`` and the calibrated ``risk`` at every grid time of ``features``."""
    if features.height == 0:
        return pl.DataFrame(schema=RISK_COLUMNS)
    return features.select("patient_id", "ts").with_columns(
        risk=pl.Series(model.predict(features), dtype=pl.Float64))


def _alert_points(grid: pl.DataFrame, episodes: pl.DataFrame):
    """Which row of ``grid`` (``patient_id``, ``ts``: the risk frame or the features) each
    episode reads: ``(ep, hit)``, the episodes numbered ``_ep`` with the time ``_at`` they are
    judged at (an open one: the patient's latest grid time; a resolved one: its last time
    true), and those with a time matched to the latest grid row ``_row`` at or before it."""
    latest = grid.group_by("patient_id").agg(pl.col("ts").max().alias("_latest"))
    ep = (episodes.select("patient_id", "rule_id", "opened_at", "last_seen_at", "resolved_at")
          .join(latest, on="patient_id", how="left")
          .with_columns(_at=pl.when(pl.col("resolved_at").is_null()).then(pl.col("_latest"))
                        .otherwise(pl.col("last_seen_at")))
          .with_row_index("_ep"))
    rows = grid.select("patient_id", pl.col("ts").alias("_ts")).with_row_index("_row")
    hit = (ep.filter(pl.col("_at").is_not_null()).sort("patient_id", "_at")
           .join_asof(rows.sort("patient_id", "_ts"), left_on="_at", right_on="_ts",
                      by="patient_id", strategy="backward", check_sortedness=False))
    return ep, hit


def queue_rows(grid: pl.DataFrame, episodes: pl.DataFrame) -> np.ndarray:
    """The rows of ``grid`` (``patient_id``, ``ts``: the features' grid) the queue reads, in
    order: each patient's latest grid time (the risk of an open alert, the patients at risk
    now) and, for each resolved episode, the latest grid time at or before its last time true
    (:func:`for_alerts`). Scored on these rows alone, :func:`for_alerts` gives what it gives on
    every row: the row each episode reads on the whole grid is kept, so it is still the latest
    kept row at or before the episode's time."""
    if grid.height == 0:
        return np.zeros(0, np.int64)
    last = (grid.select("patient_id", "ts").with_row_index("_row")
            .group_by("patient_id").agg(pl.col("_row").sort_by("ts").last()))["_row"]
    if episodes.height:
        _, hit = _alert_points(grid, episodes)
        last = pl.concat([last, hit["_row"].drop_nulls()])
    return np.unique(last.to_numpy()).astype(np.int64)


def for_alerts(model: RiskModel, features: pl.DataFrame, risk: pl.DataFrame,
               episodes: pl.DataFrame, lang: str = "en") -> pl.DataFrame:
    """The risk of each episode and why: ``patient_id``, ``rule_id``, ``opened_at``, ``risk``,
    ``risk_factors``. An open episode reads the patient's latest grid time (the queue ranks
    what is true now) and gets the three features that raised that risk most; a resolved one
    reads the latest grid time at or before its last time true, without factors (explaining
    every past time would cost a second per thousand alerts; :meth:`RiskModel.explain` gives
    them for any row). ``risk`` and ``features`` are row for row the same grid times: every
    grid time, or those :func:`queue_rows` keeps."""
    cols = {"patient_id": pl.String, "rule_id": pl.String,
            "opened_at": pl.Datetime("us", "UTC"), "risk": pl.Float64,
            "risk_factors": pl.String}
    if episodes.height == 0 or risk.height == 0:
        return pl.DataFrame(schema=cols)
    ep, hit = _alert_points(risk, episodes)
    hit = hit.join(risk.select("risk").with_row_index("_row"), on="_row", how="left")
    rows = hit.filter(pl.col("resolved_at").is_null())["_row"].drop_nulls().unique().sort()
    words = dict(zip(rows.to_list(), model.explain(features[rows.to_list()], lang=lang)))
    hit = hit.with_columns(risk_factors=pl.when(pl.col("resolved_at").is_null()).then(
        pl.col("_row").replace_strict(words, default=None, return_dtype=pl.String)))
    out = ep.join(hit.select("_ep", "risk", "risk_factors"), on="_ep", how="left")
    return out.sort("_ep").select([pl.col(c).cast(t) for c, t in cols.items()])
