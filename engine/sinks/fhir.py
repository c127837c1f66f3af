"""FHIR R4 output: the alert queue as a ``collection`` Bundle a coordination platform can read.

Each alert becomes one ``DetectedIssue`` (identifier = the alert id, severity, the reason as
``detail``), each item of its evidence an ``Observation`` the issue points at, and each patient
with a calibrated risk a ``RiskAssessment``; a ``Device`` stands for veille as their author.
docs/fhir.md gives the mapping, column by column, and why these resources.

Patients are pseudonymous: their id is only ever written in a ``subject``/``patient`` reference
(``Patient/<id>`` plus a logical ``identifier``), and the Bundle holds no ``Patient`` resource.
An id that is not a valid FHIR id (``[A-Za-z0-9.-]{1,64}``) is referenced by identifier only.

The output is deterministic: the same queue (and risk, ``as_of``, model card) gives the same
bytes. Resource ids are UUIDv5 of stable keys (the alert id, the evidence name), and each
``fullUrl`` is ``urn:uuid:<id>`` so that references resolve inside the Bundle.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import re
import tempfile
import uuid
from collections.abc import Collection, Mapping
from pathlib import Path

import polars as pl

from .. import __version__
from ..errors import OutputError
from ..schema import METRICS
from ..units import UNITS, metric_unit

#: the base of veille's own code systems, identifier systems and extensions. ``.example`` is a
#: reserved domain: a programme publishing these definitions replaces it with its canonical URL
BASE = "https://veille.example/fhir"
CS_RULE = f"{BASE}/CodeSystem/rule"                 # code: a rule id ("copd.spo2_below_target")
CS_METRIC = f"{BASE}/CodeSystem/metric"             # code: a canonical metric ("weight")
CS_EVIDENCE = f"{BASE}/CodeSystem/evidence"         # code: "<pack>.<name>" ("copd.spo2_usual")
CS_RISK_MODEL = f"{BASE}/CodeSystem/risk-model"     # code: a model card's name ("default")
SID_ALERT = f"{BASE}/sid/alert-id"                  # the queue's alert_id
SID_EVIDENCE = f"{BASE}/sid/evidence"               # "<alert_id>.<evidence name>"
SID_PATIENT = f"{BASE}/sid/patient-id"              # the pseudonymous patient_id
SID_BUNDLE = f"{BASE}/sid/queue-bundle"             # SHA-256 of the Bundle's content
SID_RISK = f"{BASE}/sid/risk-assessment"            # the RiskAssessment's own (UUIDv5) id
SID_DEVICE = f"{BASE}/sid/device"                   # "veille-<version>"
EXT = f"{BASE}/StructureDefinition"

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"

#: veille severity -> DetectedIssue.severity (required binding: high | moderate | low)
SEVERITY = {"high": "high", "medium": "moderate", "low": "low"}
#: queue status -> DetectedIssue.status (ObservationStatus): an open episode is still being
#: followed (its last_seen_at and resolution are to come), a resolved one is complete
STATUS = {"open": "preliminary", "resolved": "final"}
#: the risk model's horizon when a card gives none
DEFAULT_HORIZON_HOURS = 48.0

#: the Observation category of the canonical metrics that have one
CATEGORY = {**dict.fromkeys(("heart_rate", "spo2", "resp_rate", "temp", "sbp", "dbp", "weight"),
                            ("vital-signs", "Vital Signs")),
            "steps": ("activity", "Activity"),
            **dict.fromkeys(("glucose", "albumin"), ("laboratory", "Laboratory"))}

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, BASE)
#: unit labels of rule expressions (:data:`engine.units.UNITS`) whose UCUM code differs
_UCUM_ATOMS = {"°C": "Cel", "degC": "Cel", "mmHg": "mm[Hg]", "lb": "[lb_av]", "m": "min",
               "w": "wk", "bpm": "/min"}
_REQUIRED = ("alert_id", "patient_id", "rule_id", "pack", "severity", "status", "opened_at",
             "last_seen_at", "resolved_at", "title", "reason", "evidence")


def ucum(label: str) -> str | None:
    """The UCUM code of an evidence unit label (:data:`engine.units.UNITS` and their products
    and quotients); ``"1"`` for a plain number; None when a part is not a known unit.

    >>> [ucum(u) for u in ("kg", "mmHg", "°C", "/min", "kg/w", "", "kg/m²")]
    ['kg', 'mm[Hg]', 'Cel', '/min', 'kg/wk', '1', None]
    """
    if not label:
        return "1"
    if label in UNITS:
        return _UCUM_ATOMS.get(label, label)
    # a product or quotient of units, as :meth:`engine.units.Unit.times` labels it
    parts = re.split(r"([/·])", label.replace("·/", "/"))
    out = []
    for i in range(0, len(parts), 2):
        sep, atom = (parts[i - 1] if i else ""), parts[i]
        if atom == "" and i == 0 and len(parts) > 1 and parts[1] == "/":
            continue                      # a leading "/": "/d·..."
        code = _UCUM_ATOMS.get(atom, atom)
        if atom not in UNITS or code.startswith("/"):
            return None
        out.append({"": "", "/": "/", "·": "."}[sep] + code)
    return "".join(out)


def patient_reference(patient_id: str) -> dict:
    """A reference to a pseudonymous patient: ``Patient/<id>`` when the id is a valid FHIR id,
    always with the logical identifier (``type`` Patient) so that any id can be matched.

    >>> patient_reference("P000001")["reference"]
    'Patient/P000001'
    >>> "reference" in patient_reference("dossier 42 é")
    False
    """
    if not isinstance(patient_id, str) or not patient_id.strip():
        raise OutputError(f"a queue row has no patient id ({patient_id!r}); it cannot be "
                          "written as FHIR.")
    ref = {"reference": f"Patient/{patient_id}"} if _FHIR_ID.fullmatch(patient_id) else {}
    return {**ref, "type": "Patient",
            "identifier": {"system": SID_PATIENT, "value": patient_id}}


def rule_params(ruleset) -> dict[str, frozenset[str]]:
    """Rule id -> the names of its params (thresholds, durations, care-plan targets), for
    :func:`queue_bundle`'s ``params``: those evidence items are limits, not observations."""
    return {r.id: frozenset(r.params) for p in ruleset.packs for r in p.rules}


def queue_bundle(queue: pl.DataFrame, *, risk_latest: pl.DataFrame | None = None,
                 as_of=None, model: Mapping | None = None,
                 params: Mapping[str, Collection[str]] | None = None) -> dict:
    """The alert queue as a FHIR R4 ``collection`` Bundle (a dict, JSON-ready).

    Parameters
    ----------
    queue : polars.DataFrame
        The ranked queue (:data:`engine.queue.QUEUE_COLUMNS`).
    risk_latest : polars.DataFrame, optional
        ``patient_id, ts, risk``: the risk model's output. Only each patient's latest ``ts`` is
        used, so :attr:`engine.pipeline.Result.risk` (every grid time) can be given as is.
        Without it, a patient's risk is read from the ``risk`` of its first open alert, at
        ``as_of``.
    as_of : datetime or ISO text, optional
        The time the queue was drawn up for: the Bundle's ``timestamp``.
    model : mapping, optional
        The risk model's card (``card.json``): its name and ``model_sha256`` go into each
        ``RiskAssessment.method``, its ``horizon_hours`` into the prediction's period.
    params : mapping, optional
        Rule id -> names of its params (:func:`rule_params`). Those evidence items are written
        as ``limit`` extensions of the DetectedIssue instead of Observations. Without it every
        evidence item is an Observation.
    """
    missing = [c for c in _REQUIRED if c not in queue.columns]
    if missing:
        raise OutputError(f"the queue lacks the column(s) {', '.join(missing)}; it cannot be "
                          "written as FHIR.")
    if risk_latest is not None:
        missing = [c for c in ("patient_id", "ts", "risk") if c not in risk_latest.columns]
        if missing:
            raise OutputError(f"the risk frame lacks the column(s) {', '.join(missing)}; it "
                              "needs patient_id, ts and risk.")
    timestamp = _instant(as_of) if as_of is not None else None
    device_url = _url("device", "veille", __version__)
    device_ref = {"reference": device_url, "display": f"veille {__version__}"}
    params = params or {}

    per_patient: dict[str, list[dict]] = {}
    for row in queue.iter_rows(named=True):
        per_patient.setdefault(row["patient_id"], []).append(row)
    risks = _patient_risks(per_patient, risk_latest, timestamp)
    horizon = _horizon_hours(model)

    entries: list[dict] = []
    for patient_id, alerts in per_patient.items():
        if patient_id in risks:
            entries.append(_risk_assessment(patient_id, *risks.pop(patient_id), model,
                                            horizon, device_ref))
        for row in alerts:
            entries.extend(_alert(row, device_ref, params.get(row["rule_id"], ())))
    for patient_id in sorted(risks):          # a risk without an alert in the queue
        entries.append(_risk_assessment(patient_id, *risks[patient_id], model, horizon,
                                        device_ref))
    if entries:
        entries.insert(0, _device(device_url))

    digest = hashlib.sha256(_dumps({"timestamp": timestamp, "entry": entries})
                            .encode()).hexdigest()
    bundle = {"resourceType": "Bundle", "id": str(uuid.uuid5(_NAMESPACE, f"bundle/{digest}")),
              "identifier": {"system": SID_BUNDLE, "value": digest}, "type": "collection"}
    if timestamp is not None:
        bundle["timestamp"] = timestamp
    if entries:
        bundle["entry"] = entries
    return bundle


def result_bundle(result, engine=None) -> dict:
    """The Bundle of a run: :func:`queue_bundle` of an :class:`engine.pipeline.Result`'s queue,
    risk and ``as_of``, with the model card and rule params of the ``engine`` that made it."""
    model = getattr(engine, "model", None) if engine is not None else None
    ruleset = getattr(engine, "ruleset", None) if engine is not None else None
    return queue_bundle(result.queue, risk_latest=getattr(result, "risk", None),
                        as_of=getattr(result, "as_of", None),
                        model=model.card if model is not None else None,
                        params=rule_params(ruleset) if ruleset is not None else None)


def to_json(bundle: dict) -> str:
    """The Bundle as compact UTF-8 JSON text, with a final newline (the same bytes each time)."""
    return _dumps(bundle) + "\n"


def write_fhir(bundle_or_queue, path: str | Path, **kwargs) -> Path:
    """Write a Bundle (or a queue, converted with :func:`queue_bundle` and ``kwargs``) to
    ``path`` atomically: a temporary file (mode 0600) in the same folder, flushed to disk, then
    renamed over the target."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create the folder ({exc.strerror}).") from None
    data = bundle_or_queue if isinstance(bundle_or_queue, dict) \
        else queue_bundle(bundle_or_queue, **kwargs)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        _write_fhir(data, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot be written ({exc.strerror or exc}); nothing was "
                          "written.") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _write_fhir(frame, tmp: str) -> None:
    """Write ``frame`` (a queue, or a Bundle already built by :func:`queue_bundle`) as FHIR JSON
    to the temporary file ``tmp``: the shape of the other sinks' writers."""
    bundle = frame if isinstance(frame, dict) else queue_bundle(frame)
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(to_json(bundle))
        fh.flush()
        os.fsync(fh.fileno())


# --- resources ------------------------------------------------------------------------------

def _alert(row: dict, device_ref: dict, limits: Collection[str]) -> list[dict]:
    """The DetectedIssue of one queue row, then the Observations of its evidence."""
    alert_id = row["alert_id"]
    subject = patient_reference(row["patient_id"])
    opened = _instant(row["opened_at"])
    evidence = _evidence(row.get("evidence"), alert_id)
    observations, limit_ext = [], []
    for name, (value, unit) in evidence.items():
        if name in limits:
            limit_ext.append(_limit(name, value, unit))
        else:
            observations.append(_observation(row, name, value, unit, subject, opened))

    ext = []
    if row.get("priority") is not None:
        ext.append({"url": f"{EXT}/alert-priority", "valueInteger": int(row["priority"])})
    if row.get("patient_rank") is not None:
        ext.append({"url": f"{EXT}/patient-rank", "valueInteger": int(row["patient_rank"])})
    ext.append({"url": f"{EXT}/alert-status", "valueCode": row["status"]})
    period = {"start": opened}
    if row["resolved_at"] is not None:
        period["end"] = _instant(row["resolved_at"])
    ext.append({"url": f"{EXT}/episode-period", "valuePeriod": period})
    ext.append({"url": f"{EXT}/last-seen-at", "valueDateTime": _instant(row["last_seen_at"])})
    ext.append({"url": f"{EXT}/pack", "valueCode": row["pack"]})
    if row["severity"] not in SEVERITY:
        ext.append({"url": f"{EXT}/severity", "valueCode": row["severity"]})
    risk = _number(row.get("risk"))
    if risk is not None:
        ext.append({"url": f"{EXT}/alert-risk", "valueDecimal": risk})
    if row.get("risk_factors"):
        ext.append({"url": f"{EXT}/risk-factors", "valueString": row["risk_factors"]})
    for key, value in _labels(row.get("labels"), alert_id):
        ext.append({"url": f"{EXT}/alert-label", "extension": [
            {"url": "key", "valueString": key}, {"url": "value", "valueString": value}]})
    ext.extend(limit_ext)

    issue = {"resourceType": "DetectedIssue", "id": _id("alert", alert_id), "extension": ext,
             "identifier": [{"system": SID_ALERT, "value": alert_id}],
             "status": STATUS.get(row["status"], "unknown"),
             "code": {"coding": [{"system": CS_RULE, "code": row["rule_id"],
                                  "display": row["title"]}], "text": row["title"]}}
    if row["severity"] in SEVERITY:
        issue["severity"] = SEVERITY[row["severity"]]
    issue["patient"] = subject
    issue["identifiedDateTime"] = opened
    issue["author"] = device_ref
    if observations:
        issue["evidence"] = [{"detail": [{"reference": o["fullUrl"]} for o in observations]}]
    if row["reason"]:
        issue["detail"] = row["reason"]
    return [_entry(issue), *observations]


def _observation(row: dict, name: str, value, unit: str, subject: dict, effective: str) -> dict:
    """One evidence item of an alert as an Observation, the value the rule read at the
    opening of its episode."""
    metric = METRICS.get(name)
    is_metric = metric is not None and metric_unit(metric.unit).label == unit
    coding = []
    if is_metric:
        coding += [{"system": LOINC, "code": metric.loinc[0]}] if metric.loinc else []
        coding.append({"system": CS_METRIC, "code": name, "display": metric.description})
    else:
        coding.append({"system": CS_EVIDENCE, "code": f"{row['pack']}.{name}"})
    obs = {"resourceType": "Observation",
           "id": _id("evidence", row["alert_id"], name),
           "identifier": [{"system": SID_EVIDENCE, "value": f"{row['alert_id']}.{name}"}],
           "status": "final"}
    if is_metric and name in CATEGORY:
        code, display = CATEGORY[name]
        obs["category"] = [{"coding": [{"system": OBSERVATION_CATEGORY, "code": code,
                                        "display": display}]}]
    obs["code"] = {"coding": coding, "text": name}
    obs["subject"] = subject
    obs["effectiveDateTime"] = effective
    obs.update(_value(value, unit, metric.unit if is_metric else None))
    return _entry(obs)


def _value(value, unit: str, canonical: str | None) -> dict:
    """``value[x]`` of an evidence value, or a ``dataAbsentReason`` when it is unknown."""
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, str) and value.strip():
        return {"valueString": value}
    number = _number(value) if not isinstance(value, str) else None
    if number is None:
        return {"dataAbsentReason": {"coding": [{"system": DATA_ABSENT_REASON,
                                                 "code": "unknown", "display": "Unknown"}]}}
    return {"valueQuantity": _quantity(number, unit, canonical)}


def _quantity(number, unit: str, canonical: str | None = None) -> dict:
    """A Quantity with its UCUM code (a metric's canonical unit, else the label's); a label
    that is not a known unit is kept as text only."""
    code = canonical if canonical is not None else ucum(unit)
    q = {"value": number}
    if unit:
        q["unit"] = unit
    if code is not None:
        q["system"] = UCUM
        q["code"] = code
    return q


def _limit(name: str, value, unit: str) -> dict:
    """A param of the rule (a threshold, a duration, a care-plan target) the alert recorded."""
    inner = _value(value, unit, None)
    if "dataAbsentReason" in inner:
        inner = {}
    return {"url": f"{EXT}/limit", "extension": [{"url": "name", "valueString": name},
                                                 *([{"url": "value", **inner}] if inner else [])]}


def _risk_assessment(patient_id: str, ts: str, risk: float, factors: str | None,
                     model: Mapping | None, horizon: float, device_ref: dict) -> dict:
    start = dt.datetime.fromisoformat(ts)
    end = _instant(start + dt.timedelta(hours=horizon))
    prediction = {"outcome": {"text": f"deterioration within {_hours(horizon)} h"},
                  "probabilityDecimal": risk, "whenPeriod": {"start": ts, "end": end}}
    if factors:
        prediction["rationale"] = factors
    rid = _id("risk", patient_id, ts)
    ra = {"resourceType": "RiskAssessment", "id": rid,
          "identifier": [{"system": SID_RISK, "value": rid}], "status": "final"}
    if model:
        name = str(model.get("name") or "unnamed")
        method = {"text": f"veille risk model '{name}'"
                          + (f", model.skops SHA-256 {model['model_sha256']}"
                             if model.get("model_sha256") else "")}
        if re.fullmatch(r"\S+( \S+)*", name):
            method = {"coding": [{"system": CS_RISK_MODEL, "code": name}], **method}
        ra["method"] = method
    ra["subject"] = patient_reference(patient_id)
    ra["occurrenceDateTime"] = ts
    ra["performer"] = device_ref
    ra["prediction"] = [prediction]
    return _entry(ra)


def _device(url: str) -> dict:
    device = {"resourceType": "Device", "id": url.removeprefix("urn:uuid:"),
              "identifier": [{"system": SID_DEVICE, "value": f"veille-{__version__}"}],
              "deviceName": [{"name": "veille", "type": "model-name"}],
              "type": {"text": "clinical alert and risk-scoring engine for home telemonitoring"},
              "version": [{"value": __version__}]}
    return {"fullUrl": url, "resource": device}


# --- helpers --------------------------------------------------------------------------------

def _patient_risks(per_patient, risk_latest, timestamp) -> dict[str, tuple]:
    """patient_id -> (ts, risk, risk factors) of the patients with a risk."""
    out: dict[str, tuple] = {}
    first_open = {}
    for pid, alerts in per_patient.items():
        hit = next((r for r in alerts if r["status"] == "open"
                    and _number(r.get("risk")) is not None), None)
        if hit is not None:
            first_open[pid] = hit
    if risk_latest is not None:
        latest = (risk_latest.drop_nulls(["patient_id", "ts"]).sort("patient_id", "ts")
                  .group_by("patient_id", maintain_order=True).last())
        for pid, ts, risk in latest.select("patient_id", "ts", "risk").iter_rows():
            risk = _number(risk)
            if risk is None:
                continue
            hit = first_open.get(pid)
            # the factors explain the open alerts' risk, which is the patient's latest
            factors = hit.get("risk_factors") if hit is not None \
                and _number(hit.get("risk")) == risk else None
            out[pid] = (_instant(ts), risk, factors or None)
        return out
    for pid, hit in first_open.items():
        ts = timestamp or _instant(max(r["last_seen_at"] for r in per_patient[pid]))
        out[pid] = (ts, _number(hit["risk"]), hit.get("risk_factors") or None)
    return out


def _evidence(text, alert_id: str) -> dict[str, tuple[object, str]]:
    """name -> (value, unit) from the queue's evidence (JSON text, or already a mapping)."""
    if text is None or text == "":
        return {}
    if isinstance(text, str):
        try:
            data = json.loads(text)
        except ValueError:
            raise OutputError(f"alert {alert_id}: its evidence is not JSON ({text[:60]!r}); "
                              "it cannot be written as FHIR.") from None
    else:
        data = text
    if not isinstance(data, Mapping):
        raise OutputError(f"alert {alert_id}: its evidence is not a JSON object; it cannot be "
                          "written as FHIR.")
    out = {}
    for name, item in data.items():
        if isinstance(item, Mapping):
            out[str(name)] = (item.get("value"), str(item.get("unit") or ""))
        else:                              # a bare value: a plain number, flag or text
            out[str(name)] = (item, "")
    return out


def _labels(text, alert_id: str) -> list[tuple[str, str]]:
    if text is None or text == "":
        return []
    try:
        data = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        raise OutputError(f"alert {alert_id}: its labels are not JSON ({text[:60]!r}); it "
                          "cannot be written as FHIR.") from None
    if not isinstance(data, Mapping):
        return []
    return [(str(k), str(v)) for k, v in sorted(data.items()) if str(k) and str(v)]


def _horizon_hours(model: Mapping | None) -> float:
    value = model.get("horizon_hours") if model else None
    number = _number(value) if not isinstance(value, (bool, str)) else None
    return float(number) if number is not None and number > 0 else DEFAULT_HORIZON_HOURS


def _hours(h: float) -> str:
    return str(int(h)) if h == int(h) else f"{h:g}"


def _number(value):
    """An int or a finite float as is; None for anything else (null, NaN, text)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None


def _instant(value) -> str:
    """A FHIR dateTime with a time zone: a datetime (naive means UTC, as everywhere in veille)
    or ISO text, written in UTC."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise OutputError(f"{value!r} is not an ISO time.") from None
    if not isinstance(value, dt.datetime):
        raise OutputError(f"{value!r} is not a time (a date and time are needed).")
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).isoformat()


def _id(*key) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(str(k) for k in key)))


def _url(*key) -> str:
    return f"urn:uuid:{_id(*key)}"


def _entry(resource: dict) -> dict:
    return {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}


def _dumps(data) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
