"""FHIR R4 output (engine/sinks/fhir.py): every resource validates against the R4B models of
fhir.resources, one DetectedIssue per alert, references resolve inside the Bundle, evidence
carries LOINC and UCUM, the risk becomes a RiskAssessment, the bytes are deterministic."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import stat
import tempfile
from types import SimpleNamespace

import polars as pl
import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle

import engine
from engine.errors import OutputError
from engine.queue import QUEUE_COLUMNS, build_queue
from engine.schema import METRICS
from engine.sinks.fhir import (CS_EVIDENCE, CS_METRIC, CS_RULE, EXT, LOINC, SEVERITY, SID_ALERT,
                               SID_PATIENT, UCUM, _write_fhir, queue_bundle, result_bundle,
                               rule_params, to_json, write_fhir)
from engine.synth import generate_cohort

T = dt.datetime(2026, 1, 10, 8, tzinfo=dt.timezone.utc)
OBSERVATION_STATUS = {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                      "entered-in-error", "unknown"}
CARD = {"name": "default", "model_sha256": "ab" * 32, "horizon_hours": 48.0}


@pytest.fixture(scope="module")
def run():
    c = generate_cohort(40, days=14, seed=3)
    eng = engine.Engine.from_paths()
    result = eng.score(c.telemetry, c.patients)
    assert result.queue.height > 20
    assert set(result.queue["status"]) == {"open", "resolved"}
    return eng, result


@pytest.fixture(scope="module")
def bundle(run):
    eng, result = run
    return queue_bundle(result.queue, as_of=result.as_of, params=rule_params(eng.ruleset))


def validate(bundle: dict) -> None:
    """The Bundle, and each resource on its own, against the R4B models; then the value sets
    and invariants fhir.resources does not check."""
    Bundle.model_validate(bundle)
    for e in bundle.get("entry", []):
        r = e["resource"]
        get_fhir_model_class(r["resourceType"]).model_validate(r)
        assert e["fullUrl"] == f"urn:uuid:{r['id']}"
        if r["resourceType"] in ("DetectedIssue", "Observation", "RiskAssessment"):
            assert r["status"] in OBSERVATION_STATUS
        if r["resourceType"] == "DetectedIssue" and "severity" in r:
            assert r["severity"] in {"high", "moderate", "low"}
        if r["resourceType"] == "Observation":
            values = [k for k in r if k.startswith("value")]
            assert len(values) + ("dataAbsentReason" in r) == 1      # obs-6
        for q in _find(r, "valueQuantity"):
            assert "code" not in q or q["system"] == UCUM                # qty-3
    assert json.loads(to_json(bundle)) == bundle                         # plain JSON


def _find(node, key):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from _find(v, key)
    elif isinstance(node, list):
        for v in node:
            yield from _find(v, key)


def resources(bundle, kind):
    return [e["resource"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == kind]


def ext(resource, name):
    return [x for x in resource.get("extension", []) if x["url"] == f"{EXT}/{name}"]


def episodes(rows):
    """Episodes for build_queue: (patient, rule, severity, opened, resolved, evidence dict)."""
    out = [{"patient_id": p, "rule_id": r, "pack": r.split(".")[0], "severity": s, "title": "t",
            "opened_at": o, "condition_since": o, "last_seen_at": o, "resolved_at": z,
            "evidence": json.dumps(ev), "reason": "r", "labels": "{}"}
           for p, r, s, o, z, ev in rows]
    return pl.DataFrame(out, schema={**{k: pl.String for k in out[0]},
                                     **{k: pl.Datetime("us", "UTC") for k in
                                        ("opened_at", "condition_since", "last_seen_at",
                                         "resolved_at")}})


def test_the_bundle_of_a_real_queue_validates(bundle, run):
    validate(bundle)
    assert bundle["type"] == "collection"
    assert bundle["timestamp"] == run[1].as_of.isoformat()
    kinds = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert kinds == {"Device", "DetectedIssue", "Observation"}     # no model: no risk


def test_every_alert_has_exactly_one_resource_with_its_id(bundle, run):
    queue = run[1].queue
    found = {}
    for e in bundle["entry"]:
        for ident in e["resource"].get("identifier", []):
            if ident["system"] == SID_ALERT:
                found.setdefault(ident["value"], []).append(e["resource"]["resourceType"])
    assert set(found) == set(queue["alert_id"])
    assert all(v == ["DetectedIssue"] for v in found.values())
    issues = resources(bundle, "DetectedIssue")
    assert [i["identifier"][0]["value"] for i in issues] == queue["alert_id"].to_list()  # ranked


def test_references_resolve_inside_the_bundle(bundle):
    urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(urls) == len(set(urls))
    refs = list(_find(bundle, "reference"))
    assert refs
    for ref in refs:
        assert ref in urls or re.fullmatch(r"Patient/[A-Za-z0-9.\-]{1,64}", ref), ref
    # each DetectedIssue points at its own evidence, which names the same patient
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    for issue in resources(bundle, "DetectedIssue"):
        for ev in issue.get("evidence", []):
            for d in ev["detail"]:
                obs = by_url[d["reference"]]
                assert obs["resourceType"] == "Observation"
                assert obs["subject"] == issue["patient"]
                assert obs["effectiveDateTime"] == issue["identifiedDateTime"]


def test_severity_status_and_the_queue_columns(bundle, run):
    queue = run[1].queue
    issues = resources(bundle, "DetectedIssue")
    for row, issue in zip(queue.iter_rows(named=True), issues):
        assert issue["severity"] == SEVERITY[row["severity"]]
        assert issue["code"]["coding"][0] == {"system": CS_RULE, "code": row["rule_id"],
                                              "display": row["title"]}
        assert issue["detail"] == row["reason"]
        assert issue["patient"]["reference"] == f"Patient/{row['patient_id']}"
        assert issue["identifiedDateTime"] == row["opened_at"].isoformat()
        period = ext(issue, "episode-period")[0]["valuePeriod"]
        assert ext(issue, "alert-status")[0]["valueCode"] == row["status"]
        if row["status"] == "open":
            assert issue["status"] == "preliminary" and "end" not in period
            assert ext(issue, "alert-priority")[0]["valueInteger"] == row["priority"]
        else:
            assert issue["status"] == "final"
            assert period["end"] == row["resolved_at"].isoformat()
            assert not ext(issue, "alert-priority")
        assert ext(issue, "patient-rank")[0]["valueInteger"] == row["patient_rank"]
    assert {"high", "moderate", "low"} >= {i["severity"] for i in issues}


def test_params_are_limits_not_observations(bundle, run):
    eng, result = run
    params = rule_params(eng.ruleset)
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    limits = 0
    for row, issue in zip(result.queue.iter_rows(named=True), resources(bundle, "DetectedIssue")):
        evidence = json.loads(row["evidence"])
        mine = params[row["rule_id"]]
        observed = [by_url[d["reference"]]["code"]["text"]
                    for ev in issue.get("evidence", []) for d in ev["detail"]]
        named = [x["extension"][0]["valueString"] for x in ext(issue, "limit")]
        assert sorted(observed + named) == sorted(evidence)
        assert set(named) == set(evidence) & mine
        limits += len(named)
    assert limits
    # without the rule set, every evidence item is an Observation
    plain = queue_bundle(result.queue, as_of=result.as_of)
    assert len(resources(plain, "Observation")) == sum(
        len(json.loads(e)) for e in result.queue["evidence"])


def test_metric_observations_carry_loinc_and_ucum(bundle):
    checked = 0
    for obs in resources(bundle, "Observation"):
        codings = obs["code"]["coding"]
        metric = next((c["code"] for c in codings if c["system"] == CS_METRIC), None)
        if metric is None:
            assert [c["system"] for c in codings] == [CS_EVIDENCE]
            continue
        m = METRICS[metric]
        assert [c["code"] for c in codings if c["system"] == LOINC] == list(m.loinc[:1])
        if "valueQuantity" in obs:
            assert obs["valueQuantity"]["code"] == m.unit
            checked += 1
    assert checked


def test_evidence_values_and_units():
    ev = {"weight": {"value": 61.2, "unit": "kg"}, "sbp": {"value": 92.0, "unit": "mmHg"},
          "temp": {"value": None, "unit": "°C"}, "spo2": {"value": 91, "unit": "%"},
          "hr_rise": {"value": 12.5, "unit": "/min"}, "loss": {"value": 0.4, "unit": "kg/w"},
          "news2": {"value": 6, "unit": ""}, "on_air": {"value": True, "unit": ""},
          "programme": {"value": "copd", "unit": ""}, "odd": {"value": 2.0, "unit": "kg/m²"}}
    q = build_queue(episodes([("P1", "hf.x", "high", T, None, ev)]))
    b = queue_bundle(q, as_of=T)
    validate(b)
    obs = {o["code"]["text"]: o for o in resources(b, "Observation")}
    assert set(obs) == set(ev)
    w = obs["weight"]
    assert w["code"]["coding"][0] == {"system": LOINC, "code": "29463-7"}
    assert w["valueQuantity"] == {"value": 61.2, "unit": "kg", "system": UCUM, "code": "kg"}
    assert w["category"][0]["coding"][0]["code"] == "vital-signs"
    assert w["status"] == "final" and w["effectiveDateTime"] == T.isoformat()
    assert obs["sbp"]["code"]["coding"][0]["code"] == "8480-6"
    assert obs["sbp"]["valueQuantity"]["code"] == "mm[Hg]"
    assert obs["spo2"]["code"]["coding"][0]["code"] == "59408-5"
    assert obs["temp"]["dataAbsentReason"]["coding"][0]["code"] == "unknown"
    assert obs["hr_rise"]["code"]["coding"] == [{"system": CS_EVIDENCE, "code": "hf.hr_rise"}]
    assert obs["hr_rise"]["valueQuantity"]["code"] == "/min"
    assert obs["loss"]["valueQuantity"]["code"] == "kg/wk"
    assert obs["news2"]["valueQuantity"] == {"value": 6, "system": UCUM, "code": "1"}
    assert obs["on_air"]["valueBoolean"] is True
    assert obs["programme"]["valueString"] == "copd"
    assert obs["odd"]["valueQuantity"] == {"value": 2.0, "unit": "kg/m²"}   # no UCUM guess
    # a bare value (no unit object) is read as a plain value
    bare = build_queue(episodes([("P1", "hf.x", "low", T, None, {})]).with_columns(
        evidence=pl.lit('{"x": 1}')))
    (o,) = resources(queue_bundle(bare), "Observation")
    assert o["valueQuantity"]["value"] == 1


def _with_risk(queue: pl.DataFrame) -> pl.DataFrame:
    """Risk filled by hand: one value per patient on its open alerts (as the engine does), an
    older one on its resolved alerts."""
    pids = sorted(set(queue["patient_id"]))
    value = {p: round(0.05 + 0.9 * i / len(pids), 4) for i, p in enumerate(pids)}
    open_ = pl.col("status") == "open"
    return queue.with_columns(
        risk=pl.when(open_).then(pl.col("patient_id").replace_strict(value))
        .otherwise(pl.lit(0.01)),
        risk_factors=pl.when(open_).then(pl.lit("2 high alert(s) open; spo2 88 % (usual 94 %)")))


def test_risk_assessment_per_patient(run):
    result = run[1]
    queue = _with_risk(result.queue)
    latest = (queue.filter(pl.col("status") == "open")
              .group_by("patient_id").agg(pl.col("risk").first())
              .with_columns(ts=pl.lit(T)))
    # a grid: an older time with another value, and a patient without an alert
    grid = pl.concat([latest.select("patient_id", "ts", "risk"),
                      latest.select("patient_id", ts=pl.lit(T - dt.timedelta(hours=4)),
                                    risk=pl.lit(0.5)),
                      pl.DataFrame({"patient_id": ["Z9"], "ts": [T], "risk": [0.2]},
                                   schema_overrides={"ts": pl.Datetime("us", "UTC")})])
    b = queue_bundle(queue, risk_latest=grid, as_of=result.as_of, model=CARD)
    validate(b)
    ras = {r["subject"]["identifier"]["value"]: r for r in resources(b, "RiskAssessment")}
    assert set(ras) == set(latest["patient_id"]) | {"Z9"}
    for pid, risk in latest.select("patient_id", "risk").iter_rows():
        ra = ras[pid]
        p = ra["prediction"][0]
        assert p["probabilityDecimal"] == risk
        assert p["outcome"]["text"] == "deterioration within 48 h"
        assert p["whenPeriod"] == {"start": T.isoformat(),
                                   "end": (T + dt.timedelta(hours=48)).isoformat()}
        assert p["rationale"].startswith("2 high alert(s) open")
        assert ra["status"] == "final" and ra["occurrenceDateTime"] == T.isoformat()
        assert "default" in ra["method"]["text"] and CARD["model_sha256"] in ra["method"]["text"]
    assert "rationale" not in ras["Z9"]["prediction"][0]
    # the per-alert risk stays on each DetectedIssue
    for row, issue in zip(queue.iter_rows(named=True), resources(b, "DetectedIssue")):
        assert ext(issue, "alert-risk")[0]["valueDecimal"] == row["risk"]
    # without the grid: read from the queue's open alerts, at as_of
    b2 = queue_bundle(queue, as_of=result.as_of, model={**CARD, "horizon_hours": 72})
    validate(b2)
    ras2 = {r["subject"]["identifier"]["value"]: r for r in resources(b2, "RiskAssessment")}
    assert set(ras2) == set(latest["patient_id"])
    for pid, risk in latest.select("patient_id", "risk").iter_rows():
        assert ras2[pid]["prediction"][0]["probabilityDecimal"] == risk
        assert ras2[pid]["occurrenceDateTime"] == result.as_of.isoformat()
        assert ras2[pid]["prediction"][0]["outcome"]["text"] == "deterioration within 72 h"


def test_result_bundle_reads_a_run_and_its_engine(run, bundle):
    eng, result = run
    assert to_json(result_bundle(result, eng)) == to_json(bundle)         # no model, no risk
    # a run with a model: its grid risk and card (stand-ins, the real model is slow to load)
    queue = _with_risk(result.queue)
    grid = (queue.filter(pl.col("status") == "open").group_by("patient_id")
            .agg(pl.col("risk").first()).with_columns(ts=pl.lit(T)))
    fake = SimpleNamespace(queue=queue, risk=grid, as_of=result.as_of)
    b = result_bundle(fake, SimpleNamespace(model=SimpleNamespace(card=CARD),
                                            ruleset=eng.ruleset))
    validate(b)
    ras = resources(b, "RiskAssessment")
    assert len(ras) == grid.height
    assert all(CARD["model_sha256"] in r["method"]["text"] for r in ras)
    assert any(ext(i, "limit") for i in resources(b, "DetectedIssue"))   # its params used


def test_the_bundle_is_deterministic(run):
    eng, result = run
    kw = {"as_of": result.as_of, "params": rule_params(eng.ruleset)}
    a = to_json(queue_bundle(result.queue, **kw))
    b = to_json(queue_bundle(result.queue.clone(), **kw))
    assert a == b
    other = queue_bundle(result.queue, as_of=result.as_of + dt.timedelta(hours=1))
    assert json.loads(a)["identifier"]["value"] != other["identifier"]["value"]
    with tempfile.TemporaryDirectory() as d:
        p1, p2 = os.path.join(d, "a.fhir.json"), os.path.join(d, "sub", "b.fhir.json")
        write_fhir(result.queue, p1, **kw)
        write_fhir(json.loads(a), p2)
        assert open(p1, "rb").read() == open(p2, "rb").read() == a.encode("utf-8")
        assert stat.S_IMODE(os.stat(p1).st_mode) == 0o600
        assert sorted(os.listdir(d)) == ["a.fhir.json", "sub"]          # no temp file left
        # the writer in the sinks' shape takes a queue or a Bundle
        fd, tmp = tempfile.mkstemp(dir=d)
        os.close(fd)
        _write_fhir(result.queue, tmp)
        assert json.loads(open(tmp, encoding="utf-8").read())["type"] == "collection"


@pytest.mark.parametrize("pid", ["dossier 42", "patiénte-é", "x" * 65, "a/b"])
def test_ids_that_are_not_fhir_ids_still_validate(pid):
    ev = {"weight": {"value": 80.0, "unit": "kg"}}
    q = build_queue(episodes([(pid, "hf.x", "medium", T, None, ev),
                              ("P2", "hf.x", "low", T, T + dt.timedelta(hours=3), ev)]))
    q = q.with_columns(risk=pl.lit(0.3))
    b = queue_bundle(q, as_of=T)
    validate(b)
    text = to_json(b)
    assert f"Patient/{pid}" not in text
    subjects = [r.get("patient") or r.get("subject")
                for e in b["entry"] for r in [e["resource"]] if r["resourceType"] != "Device"]
    odd = [s for s in subjects if s["identifier"]["value"] == pid]
    assert len(odd) == 3            # its DetectedIssue, Observation and RiskAssessment
    assert all(s == {"type": "Patient", "identifier": {"system": SID_PATIENT, "value": pid}}
               for s in odd)


def test_an_empty_queue_gives_a_valid_empty_bundle():
    b = queue_bundle(pl.DataFrame(schema=QUEUE_COLUMNS), as_of=T)
    validate(b)
    assert "entry" not in b and b["type"] == "collection" and b["timestamp"] == T.isoformat()
    assert to_json(b) == to_json(queue_bundle(pl.DataFrame(schema=QUEUE_COLUMNS), as_of=T))
    validate(queue_bundle(pl.DataFrame(schema=QUEUE_COLUMNS)))       # no as_of: no timestamp


def test_bad_input_is_refused_with_a_message():
    with pytest.raises(OutputError, match="lacks the column"):
        queue_bundle(pl.DataFrame({"alert_id": ["a"]}))
    q = build_queue(episodes([("P1", "hf.x", "low", T, None, {})]))
    with pytest.raises(OutputError, match="not JSON"):
        queue_bundle(q.with_columns(evidence=pl.lit("{oops")))


def test_veille_score_writes_a_valid_bundle_beside_a_jsonl_quarantine(tmp_path):
    """The command line's .fhir.json output: a Bundle that validates, its quarantine in JSON
    Lines (rejected rows are not clinical resources)."""
    import json as _json

    from typer.testing import CliRunner

    from cli import app
    from engine.synth import generate_cohort as _gen

    c = _gen(30, days=14, seed=8)
    c.telemetry.write_parquet(tmp_path / "t.parquet")
    c.patients.write_parquet(tmp_path / "p.parquet")
    out = tmp_path / "queue.fhir.json"
    r = CliRunner().invoke(app, ["score", str(tmp_path / "t.parquet"), "--patients",
                                 str(tmp_path / "p.parquet"), "--out", str(out), "--model",
                                 "none"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "queue.quarantine.jsonl").exists()
    from fhir.resources.R4B.bundle import Bundle as _Bundle

    bundle = _json.loads(out.read_text(encoding="utf-8"))
    _Bundle.model_validate(bundle)
    kinds = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert "DetectedIssue" in kinds and "RiskAssessment" not in kinds
