"""veille on Apache Spark: the single-machine run's results, computed where the data lies.

A run, and where each part of it runs::

    driver   the Parquet file's schema; the patients table, checked once
    Spark    the rows numbered as in the file (``_metadata.row_index``), then cut by patient
             (``repartition(N, key)``): a patient's rows, and its row of the patients table,
             meet in one slice whatever the spelling of its id (spaces around it)
    pass 1   each slice ingested (``mapInArrow``): its latest clean reading, its accounting
    driver   ``as_of``: the latest clean reading of the whole input, or ``--as-of`` checked
    pass 2   each slice: :func:`engine.pipeline.score_slice` (ingest → detect → … → risk)
    driver   :func:`engine.pipeline.merge_evaluations` → :meth:`engine.Engine.rank` (queue,
             hygiene): the same :class:`engine.Result` as :meth:`engine.Engine.score`

Only the slices' episodes, risk rows and quarantined rows come back to the driver (a slice's
results travel as one pickled row of ``kind``, ``payload``); the clean telemetry stays on the
cluster (``Result.clean`` is empty). An error veille raises in a worker (an input it refuses)
comes back as such a row and is raised on the driver as the same error, with the same message
as a single-machine run's.

The workers rebuild the engine from the rule, site and model paths (each Python worker once):
on a cluster those paths, and the telemetry file, must be readable from every worker, and the
workers run the interpreter ``PYSPARK_PYTHON`` names (default: this one).
"""
from __future__ import annotations

import datetime as dt
import functools
import os
import pickle
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import polars as pl

from ..errors import InputError, VeilleError

#: columns the run adds to the file's (named so that no export has them)
_ROW, _PATIENT, _KEY = "__veille_row", "__veille_patient", "__veille_key"
#: what every slice gives back: one row per slice, its result pickled
OUTPUT_SCHEMA = "kind string, payload binary"
CONF = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # timestamps cross between the JVM and Python as UTC instants, whatever the machine's zone
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    # PySpark warns that it has not caught up with pandas 3; veille's workers use Arrow
    "spark.executorEnv.PYTHONWARNINGS": "ignore::FutureWarning",
    "spark.driver.extraJavaOptions":
        f"-Dlog4j2.configurationFile={Path(__file__).with_name('log4j2.properties').as_uri()}",
}


@dataclass(frozen=True)
class Job:
    """What every slice needs: the engine's recipe, the run's settings and global values."""

    rules: tuple[str, ...]
    sites: tuple[str, ...]
    model: str | None
    lang: str
    name: str
    schema: dict
    patients: pl.DataFrame | None
    now: dt.datetime
    until: dt.datetime | None = None
    tz: str | None = None
    columns: dict | None = None
    metric: str | None = None
    unit: str | None = None
    programme: str | None = None


def session(master: str = "local[2]", *, app: str = "veille"):
    """A quiet Spark session on ``master`` (``local[N]``, ``spark://…``, ``yarn``…), whose
    Python workers run ``PYSPARK_PYTHON`` (default: this interpreter)."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master).appName(app)
    for k, v in CONF.items():
        builder = builder.config(k, v)
    if "PYSPARK_PYTHON" not in os.environ:
        builder = builder.config("spark.pyspark.python", sys.executable)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def score(telemetry, patients=None, *, rules: Sequence[str | Path] | None = None,
          sites: Sequence[str | Path] = (), model: str | Path | None = None,
          lang: str = "fr", hygiene=None, engine=None, master: str = "local[2]",
          partitions: int | None = None, spark=None, tz: str | None = None,
          now: dt.datetime | None = None, as_of: dt.datetime | None = None,
          columns: dict[str, str] | None = None, metric: str | None = None,
          unit: str | None = None, programme: str | None = None, silences: Sequence = (),
          progress=None):
    """:meth:`engine.Engine.score` on Spark: a Parquet telemetry file scored in ``partitions``
    slices of whole patients (default: the cluster's parallelism), with the same result.

    ``rules``, ``sites``, ``model`` and ``lang`` are the engine's recipe, as for
    :meth:`engine.Engine.from_paths` (the workers build their engine from it); ``engine``, if
    given, is the driver's, built from the same recipe. ``spark`` is a session to run in
    (default: a new one on ``master``, stopped at the end). The other arguments are
    :meth:`engine.Engine.score`'s.
    """
    from ..paths import bundled
    from ..pipeline import Engine, patients_input, settle_slices

    started = time.perf_counter()
    name = str(telemetry)
    schema = _parquet_schema(name)
    now = now or dt.datetime.now(dt.timezone.utc)
    pats, label = patients_input(str(patients) if patients is not None else None, programme)
    rules = [bundled("rules")] if rules is None else rules
    job = Job(rules=tuple(str(Path(r).resolve()) for r in rules),
              sites=tuple(str(Path(s).resolve()) for s in sites),
              model=None if model is None else model if model == "default"
              else str(Path(model).resolve()),
              lang=lang, name=name, schema=schema, patients=pats, now=now, tz=tz,
              columns=columns, metric=metric, unit=unit, programme=programme)
    engine = engine or Engine.from_paths(list(rules), sites=list(sites), model=job.model,
                                         lang=lang, hygiene=hygiene)
    from pyspark.sql import SparkSession

    # a session this run starts is stopped at its end; one already running is the caller's
    own = spark is None and SparkSession.getActiveSession() is None
    if progress:
        progress("starting Spark")
    spark = spark or session(master)
    try:
        with warnings.catch_warnings():
            # PySpark warns that it has not caught up with pandas 3; veille hands it Arrow
            warnings.simplefilter("ignore", FutureWarning)
            frame = _slices(spark, job, partitions or spark.sparkContext.defaultParallelism)
        try:
            if progress:
                progress("ingest")
            first = _run(frame, job, "ingest")
            until, pats = settle_slices(engine, first, name, until=None, as_of=as_of, now=now,
                                        patients=pats, programme=programme, label=label)
            if progress:
                progress("detect")
            slices = _run(frame, Job(**{**job.__dict__, "until": until}), "score")
        finally:
            frame.unpersist()
    finally:
        if own:
            spark.stop()
    from ..pipeline import result_of_slices

    return result_of_slices(engine, slices, pats, until, name, silences=silences,
                            progress=progress, timings={"spark": time.perf_counter() - started})


def _parquet_schema(path: str) -> dict:
    """The file's columns and types as polars reads them (each slice is cast back to them, so
    that it is read as the single-machine run reads the file)."""
    p = Path(path)
    if not p.exists():
        raise InputError("telemetry file not found.", path=path)
    if p.is_dir() or p.suffix.lower() != ".parquet":
        raise InputError("the Spark engine reads a Parquet telemetry file (.parquet); convert "
                         "the export, or score it without --engine spark.", path=path)
    try:
        return dict(pl.read_parquet_schema(p))
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"cannot be read as PARQUET ({str(exc).splitlines()[0]}). Check that "
                         "the file is complete.", path=path) from None


def _slices(spark, job: Job, n: int):
    """The input as ``n`` partitions of whole patients, each row numbered as in the file, and
    one marker row per patients-table row beside its patient's telemetry."""
    from pyspark.sql import functions as F

    try:
        df = spark.read.parquet(job.name)
        df = df.select(*[F.col(f"`{c}`") for c in df.columns],
                       (F.col("_metadata.row_index") + 1).alias(_ROW))
    except Exception as exc:          # a type Spark cannot read (nanosecond times…)
        raise InputError(f"Spark cannot read it: {_first_line(exc)}", path=job.name) from None
    renamed = {new: old for old, new in (job.columns or {}).items()}
    source = renamed.get("patient_id", None if "patient_id" in (job.columns or {})
                         else "patient_id")

    def key(col):
        # coarser than ingest's stripping of the id (every white space goes): the same patient
        # always lands in one slice
        return F.regexp_replace(col.cast("string"), r"(?U)\s", "")

    # an id column missing from the file: every row in one slice, whose ingest says what is wrong
    df = df.withColumn(_KEY, key(F.col(f"`{source}`")) if source in df.columns
                       else F.lit(None).cast("string"))
    if job.patients is not None and job.patients.height:
        marks = spark.createDataFrame([(p,) for p in job.patients["patient_id"].to_list()],
                                      f"`{_PATIENT}` string")
        df = df.unionByName(marks.withColumn(_KEY, key(F.col(_PATIENT))),
                            allowMissingColumns=True)
    return df.repartition(n, _KEY).drop(_KEY).persist()


def _run(frame, job: Job, phase: str) -> list:
    """Run ``phase`` ('ingest' or 'score') on every slice; the slices' results, or the first
    error veille raised in one."""
    from pyspark.errors import PySparkException
    from py4j.protocol import Py4JJavaError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            rows = frame.mapInArrow(functools.partial(_worker, job, phase),
                                    OUTPUT_SCHEMA).collect()
        except (PySparkException, Py4JJavaError) as exc:
            raise RuntimeError(f"a Spark task failed: {_first_line(exc)}") from None
    out = []
    for kind, payload in rows:
        obj = pickle.loads(payload)
        if kind == "error":
            raise obj
        out.append(obj)
    return out


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


#: each Python worker's engines, by recipe: built once, reused by its next slices
_ENGINES: dict = {}
_BUILDING = threading.Lock()


def _engine(job: Job):
    from ..pipeline import Engine

    key = (job.rules, job.sites, job.model, job.lang)
    with _BUILDING:
        if key not in _ENGINES:
            _ENGINES[key] = Engine.from_paths(list(job.rules), sites=list(job.sites),
                                              model=job.model, lang=job.lang)
    return _ENGINES[key]


def _prepare(job: Job) -> None:
    """Build the worker's engine in the background while it ingests (pass 1): Spark reuses
    its Python workers, so pass 2 finds it built."""
    def build():
        try:
            _engine(job)
        except Exception:           # pass 2 builds it again and reports the error
            pass

    threading.Thread(target=build, daemon=True).start()


def _worker(job: Job, phase: str, batches):
    """One slice (a Spark partition): its rows back in file order, as polars reads the file,
    through :func:`engine.pipeline.score_slice`; yields one Arrow batch of ``kind, payload``."""
    import pyarrow as pa

    from .. import arrow_buffers
    from ..pipeline import score_slice

    if phase == "ingest":
        _prepare(job)
    # the batches lie on the bytes Python read from Spark's socket: polars gets an Arrow copy
    data = [pl.from_arrow(arrow_buffers.owned(b)) for b in batches]
    data = [d for d in data if d.height]
    if not data:
        return
    data = pl.concat(data, how="diagonal_relaxed")
    tel = data.filter(pl.col(_ROW).is_not_null()).sort(_ROW)
    pats = job.patients
    if pats is not None:
        marks = data[_PATIENT].drop_nulls() if _PATIENT in data.columns \
            else pl.Series([], dtype=pl.String)
        pats = pats.filter(pl.col("patient_id").is_in(marks.implode()))
    try:
        raw = tel.select(list(job.schema)).cast(job.schema)
        result = score_slice(
            _engine(job) if phase == "score" else None, raw, pats, now=job.now,
            until=job.until if phase == "score" else None, tz=job.tz, name=job.name,
            columns=job.columns, metric=job.metric, unit=job.unit, programme=job.programme,
            rows=tel[_ROW])
        kind, payload = phase, result
    except VeilleError as exc:
        kind, payload = "error", exc
    yield pa.RecordBatch.from_arrays(
        [pa.array([kind], pa.string()), pa.array([pickle.dumps(payload)], pa.binary())],
        names=["kind", "payload"])
