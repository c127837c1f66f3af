"""The queue store: a DuckDB file that keeps the alert queue across runs, with its history.

``veille score … --store queue.duckdb`` writes each run into it **in one transaction**: a
``runs`` row (when, as of when, the input's SHA-256 and row accounting, the packs' names,
versions and file hashes, the model's SHA-256, the engine version), every alert of the run
inserted or updated by its stable ``alert_id``, an ``alert_events`` row for each change (an
alert opened, resolved, or raised in severity) and the run's quarantined rows. A run that fails
or is killed before the commit leaves the store as the previous run left it. A second process
writing the same store at once is refused (DuckDB holds a lock on the file while a run writes).

The nurses' workflow lives beside the engine's state: ``veille queue ack|snooze|resolve``
record who did what, when and why (``alert_events``), and set the alert's ``workflow``
(``new``, ``acknowledged``, ``snoozed`` until a time, ``closed``). A snoozed alert is back in
the open queue once its time has passed; an acknowledged alert whose severity rises is ``new``
again. Plain SQL reads it; the open queue a platform fetches is :data:`OPEN_QUEUE_SQL`.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path

import polars as pl

from .errors import InputError, OutputError
from .queue import QUEUE_COLUMNS, SEVERITY_TIER
from .sources import file_sha256

SCHEMA_VERSION = "1"
WORKFLOW = ("new", "acknowledged", "snoozed", "closed")

_DDL = [
    "create table if not exists store_meta (key varchar primary key, value varchar)",
    "create sequence if not exists run_ids start 1",
    """create table if not exists runs (
        run_id bigint primary key, started_at timestamptz, finished_at timestamptz,
        as_of timestamptz, input varchar, input_sha256 varchar, rows_in bigint,
        rows_used bigint, rows_quarantined bigint, duplicates_collapsed bigint,
        packs varchar, model_name varchar, model_sha256 varchar, engine_version varchar,
        lang varchar, alerts bigint, opened bigint, resolved bigint)""",
    """create table if not exists alerts (
        alert_id varchar primary key, patient_id varchar, rule_id varchar, pack varchar,
        severity varchar, risk double, risk_factors varchar, status varchar,
        opened_at timestamptz, last_seen_at timestamptz, resolved_at timestamptz,
        title varchar, reason varchar, evidence varchar, labels varchar, priority bigint,
        patient_rank bigint, first_run bigint, last_run bigint, workflow varchar,
        workflow_by varchar, workflow_at timestamptz, snoozed_until timestamptz)""",
    """create table if not exists alert_events (
        alert_id varchar, run_id bigint, happened_at timestamptz, event varchar, actor varchar,
        note varchar, detail varchar)""",
]

#: the open queue as a platform fetches it: open alerts not snoozed into the future and not
#: closed by a nurse, most urgent first (``now`` is a bound timestamp)
OPEN_QUEUE_SQL = """
select * from alerts
where status = 'open' and workflow <> 'closed'
  and (workflow <> 'snoozed' or snoozed_until <= $now)
order by priority
"""

_LOCK = re.compile(r"PID (\d+)")


class _Connection:
    """A DuckDB connection read statement by statement (DuckDB 2 refuses a statement while
    the previous one's result is unread): ``run`` for a statement, ``one`` and ``all`` for
    rows, ``frame`` for a polars frame."""

    def __init__(self, con):
        self._con = con

    def run(self, sql: str, params=None) -> None:
        self._con.execute(sql, params) if params is not None else self._con.execute(sql)
        self._con.complete()

    def all(self, sql: str, params=None) -> list:
        cur = self._con.execute(sql, params) if params is not None else self._con.execute(sql)
        rows = cur.fetchall()
        self._con.complete()
        return rows

    def one(self, sql: str, params=None):
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def frame(self, sql: str, params=None) -> pl.DataFrame:
        rel = self._con.sql(sql, params=params) if params is not None else self._con.sql(sql)
        return pl.from_arrow(rel.to_arrow_table())

    def register(self, name: str, table) -> None:
        self._con.register(name, table)

    def close(self) -> None:
        self._con.close()


def _connect(path: Path, read_only: bool = False) -> _Connection:
    import duckdb

    try:
        return _Connection(duckdb.connect(str(path), read_only=read_only))
    except duckdb.IOException as exc:
        text = str(exc)
        if "lock" in text.lower():
            pid = _LOCK.search(text)
            who = f" (process {pid.group(1)})" if pid else ""
            raise OutputError(f"{path}: another veille run is writing this store{who}; "
                              "nothing was written. Run again once it has finished.") from None
        raise OutputError(f"{path}: cannot be opened as a queue store ({text}).") from None
    except duckdb.Error as exc:
        raise OutputError(f"{path}: cannot be opened as a queue store ({exc}).") from None


def _check_schema(con, path: Path, *, written: bool = False) -> None:
    """Refuse a DuckDB file that is not a queue store (or, ``written``, holds no run yet)."""
    tables = {r[0] for r in con.all("select table_name from information_schema.tables "
                                     "where table_schema = 'main'")}
    if written and "store_meta" not in tables:
        raise InputError("is not a veille queue store, or no run was recorded in it yet "
                         "(veille score --store writes one).", path=str(path))
    if tables and "store_meta" not in tables:
        raise OutputError(f"{path}: is a DuckDB file but not a veille queue store (it has "
                          f"{', '.join(sorted(tables)[:5])}); give a new file or a store.")
    if "store_meta" in tables:
        got = con.one("select value from store_meta where key = 'schema_version'")
        if got is None or got[0] != SCHEMA_VERSION:
            raise OutputError(f"{path}: queue store schema {got[0] if got else '?'}, this "
                              f"veille writes schema {SCHEMA_VERSION}.")


def pack_provenance(ruleset) -> str:
    """JSON list of the run's packs: name, version and the SHA-256 of each pack file."""
    out = []
    for p in ruleset.packs:
        out.append({"pack": p.name, "version": p.version, "sha256": file_sha256(p.path),
                    "sites": list(p.sites)})
    return json.dumps(out, sort_keys=True)


def write_run(path: str | Path, result, *, engine=None, input_path=None,
              started_at: dt.datetime | None = None) -> int:
    """Record a run (:class:`engine.pipeline.Result`) in the store at ``path`` (created when
    missing, owner-only), in one transaction; returns the run id."""
    from . import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    con = _connect(path)
    try:
        if new:
            os.chmod(path, 0o600)
        _check_schema(con, path)
        con.run("begin transaction")
        for ddl in _DDL:
            con.run(ddl)
        con.run("insert or replace into store_meta values ('schema_version', ?)",
                    [SCHEMA_VERSION])
        run_id = con.one("select nextval('run_ids')")[0]
        now = dt.datetime.now(dt.timezone.utc)
        q = result.queue.select(list(QUEUE_COLUMNS))
        con.register("q", q.to_arrow())
        before = con.frame("select alert_id, severity, status, workflow from alerts "
                           "where alert_id in (select alert_id from q)")
        known = dict(zip(before["alert_id"], before.iter_rows(named=True)))
        events = []
        opened = resolved = 0
        for r in q.iter_rows(named=True):
            old = known.get(r["alert_id"])
            if old is None:
                opened += 1
                events.append((r["alert_id"], "opened", None))
                if r["status"] == "resolved":
                    resolved += 1
                    events.append((r["alert_id"], "resolved", None))
                continue
            if old["status"] == "open" and r["status"] == "resolved":
                resolved += 1
                events.append((r["alert_id"], "resolved", None))
            if SEVERITY_TIER.get(r["severity"], 3) < SEVERITY_TIER.get(old["severity"], 3):
                events.append((r["alert_id"], "severity_raised",
                               f"{old['severity']} -> {r['severity']}"))
        raised = {a for a, e, _ in events if e == "severity_raised"}
        con.run("""
            insert into alerts by name
            select q.*, ? as first_run, ? as last_run, 'new' as workflow,
                   null as workflow_by, null as workflow_at, null as snoozed_until
            from q where alert_id not in (select alert_id from alerts)""", [run_id, run_id])
        con.run("""
            update alerts set severity = q.severity, risk = q.risk,
                   risk_factors = q.risk_factors, status = q.status,
                   last_seen_at = q.last_seen_at, resolved_at = q.resolved_at, title = q.title,
                   reason = q.reason, evidence = q.evidence, labels = q.labels,
                   priority = q.priority, patient_rank = q.patient_rank, last_run = ?
            from q where alerts.alert_id = q.alert_id""", [run_id])
        if raised:
            # an acknowledged alert whose severity rises is the team's to see again
            con.run("update alerts set workflow = 'new' where workflow = 'acknowledged' "
                        "and alert_id in (select unnest(?))", [sorted(raised)])
        for alert, event, detail in events:
            con.run("insert into alert_events values (?, ?, ?, ?, 'veille', null, ?)",
                        [alert, run_id, now, event, detail])
        rep = result.report
        model = getattr(engine, "model", None) if engine is not None else None
        con.run("insert into runs values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            run_id, started_at or now, dt.datetime.now(dt.timezone.utc), result.as_of,
            None if input_path is None else str(input_path),
            None if input_path is None else file_sha256(input_path), rep.rows_in,
            rep.rows_used, rep.rows_quarantined, rep.duplicates_collapsed,
            pack_provenance(engine.ruleset) if engine is not None else None,
            None if model is None else model.name, None if model is None else model.sha256,
            __version__, getattr(engine, "lang", None), q.height, opened, resolved])
        quarantine = result.quarantine.with_columns(pl.lit(run_id, pl.Int64).alias("run_id"))
        con.register("quar", quarantine.to_arrow())
        has = con.one("select count(*) from information_schema.tables where table_name = "
                      "'quarantine'")[0]
        if not has:
            con.run("create table quarantine as select run_id, * exclude (run_id) from quar "
                    "where false")
        con.run("insert into quarantine by name select * from quar")
        con.run("commit")
        return int(run_id)
    except BaseException as exc:
        try:
            con.run("rollback")
        except Exception:  # noqa: BLE001 - no transaction open: nothing to undo
            pass
        if new:             # a store this run created holds nothing: leave no empty file
            con.close()
            for leftover in (path, path.with_name(path.name + ".wal")):
                if leftover.exists():
                    leftover.unlink()
        if isinstance(exc, (OutputError, KeyboardInterrupt, SystemExit)):
            raise
        import duckdb

        if isinstance(exc, duckdb.Error):
            raise OutputError(f"{path}: the run could not be recorded ({exc}); the store is "
                              "as the previous run left it.") from None
        raise
    finally:
        con.close()


def open_queue(path: str | Path, *, now: dt.datetime | None = None, status: str = "open",
               patient: str | None = None) -> pl.DataFrame:
    """The store's alerts as a frame: the open queue (``status="open"``, snoozes honoured)
    or every alert (``"all"``), optionally for one patient."""
    path = Path(path)
    if not path.exists():
        raise InputError("no queue store there (veille score --store writes one).",
                         path=str(path))
    con = _connect(path, read_only=True)
    try:
        _check_schema(con, path, written=True)
        now = now or dt.datetime.now(dt.timezone.utc)
        if status == "open":
            df = con.frame(OPEN_QUEUE_SQL, {"now": now})
        elif status == "all":
            df = con.frame("select * from alerts order by status, priority nulls last, "
                           "opened_at")
        else:
            raise InputError(f"--status must be open or all; got {status!r}.")
    finally:
        con.close()
    if patient is not None:
        df = df.filter(pl.col("patient_id") == patient)
    return df


def act(path: str | Path, alert_id: str, action: str, *, by: str, note: str | None = None,
        until: dt.datetime | None = None, now: dt.datetime | None = None) -> dict:
    """A nurse's action on an alert: ``ack``, ``snooze`` (until a later time) or ``resolve``
    (closed by the team), recorded in ``alert_events``; returns the alert's new state."""
    path = Path(path)
    if action not in ("ack", "snooze", "resolve"):
        raise InputError(f"unknown action {action!r}: ack, snooze or resolve.")
    if not by or not by.strip():
        raise InputError("--by must name who acts (an initials or a staff id).")
    now = now or dt.datetime.now(dt.timezone.utc)
    if action == "snooze":
        if until is None or until.tzinfo is None:
            raise InputError("snooze needs --until, a time with its zone (e.g. "
                             "2026-02-15T08:00+01:00).")
        if until <= now:
            raise InputError(f"--until {until.isoformat()} has already passed.")
    if not path.exists():
        raise InputError("no queue store there (veille score --store writes one).",
                         path=str(path))
    workflow = {"ack": "acknowledged", "snooze": "snoozed", "resolve": "closed"}[action]
    con = _connect(path)
    try:
        _check_schema(con, path, written=True)
        row = con.one("select alert_id from alerts where alert_id = ?", [alert_id])
        if row is None:
            raise InputError(f"no alert {alert_id!r} in the store (veille queue list shows "
                             "the ids).", path=str(path))
        con.run("begin transaction")
        con.run("update alerts set workflow = ?, workflow_by = ?, workflow_at = ?, "
                    "snoozed_until = ? where alert_id = ?",
                    [workflow, by.strip(), now, until if action == "snooze" else None,
                     alert_id])
        con.run("insert into alert_events values (?, null, ?, ?, ?, ?, ?)",
                    [alert_id, now, {"ack": "acknowledged", "snooze": "snoozed",
                                     "resolve": "closed"}[action], by.strip(), note,
                     None if until is None else until.isoformat()])
        con.run("commit")
        state = con.frame("select alert_id, status, workflow, workflow_by, snoozed_until "
                          "from alerts where alert_id = ?", [alert_id])
    finally:
        con.close()
    return state.row(0, named=True)


def history(path: str | Path, alert_id: str) -> pl.DataFrame:
    """The audit trail of one alert, oldest first."""
    con = _connect(Path(path), read_only=True)
    try:
        _check_schema(con, Path(path), written=True)
        return con.frame("select * from alert_events where alert_id = ? "
                         "order by happened_at, event", [alert_id])
    finally:
        con.close()


def latest_as_of(path: str | Path):
    """The ``as_of`` of the store's latest run (None before any)."""
    con = _connect(Path(path), read_only=True)
    try:
        _check_schema(con, Path(path), written=True)
        row = con.one("select as_of from runs order by run_id desc limit 1")
    finally:
        con.close()
    return None if row is None else row[0]


def queue_frame(path: str | Path, *, status: str = "all",
                now: dt.datetime | None = None) -> pl.DataFrame:
    """The store's alerts in the queue's own columns (:data:`engine.queue.QUEUE_COLUMNS`), as
    the file sinks write them: every alert (``all``) or the open queue (``open``)."""
    df = open_queue(path, status=status, now=now)
    return df.select([pl.col(c).cast(t) for c, t in QUEUE_COLUMNS.items()])
