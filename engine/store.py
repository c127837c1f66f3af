"""The queue store: a DuckDB file that keeps the alert queue across runs, with its history.

``veille score … --store queue.duckdb`` writes each run into it **in one transaction**: a
``runs`` row (when, as of when, the input's SHA-256 and row accounting, the packs' names,
versions and file hashes, the model's SHA-256, the engine version), every alert of the run
inserted or updated by its stable ``alert_id``, an ``alert_events`` row for each change (an
alert opened, resolved, or raised in severity) and the run's quarantined rows. A run that fails
or is killed before the commit leaves the store as the previous run left it. The commit goes
to DuckDB's write-ahead log, then the run copies the log into the store file (a checkpoint):
a disk that refuses the commit leaves the previous runs and says so; one that refuses only
the checkpoint leaves the whole run in the log, which every open reads back and the next
write copies in, and says that too (exit 2 either way). The same
transaction keeps what the next run continues from (``readings``, ``rule_state``, ``episodes``:
:mod:`engine.incremental`), so a store is scored batch after batch. A second process
writing the same store at once is refused (DuckDB holds a lock on the file while a run writes).

The nurses' workflow lives beside the engine's state: ``veille queue ack|snooze|resolve``
record who did what, when and why (``alert_events``), and set the alert's ``workflow``
(``new``, ``acknowledged``, ``snoozed`` until a time, ``closed``). A snoozed alert is back in
the open queue once its time has passed; an acknowledged alert whose severity rises is ``new``
again. Plain SQL reads it; the open queue a platform fetches is :data:`OPEN_QUEUE_SQL`.

Alert hygiene (:mod:`engine.hygiene`) adds what Alertmanager users expect: **silences**
(``silences``: matchers on patients, rules, packs, severities and labels, an author, a reason,
a start and an end; ``veille queue silence add|list|expire``, each change in
``silence_events``), honoured by the next ``veille score --store`` and at once by ``veille
queue list``; a snooze covers its patient and rule only (snoozing "glucose high" never hides
"glucose low"); an open, unacknowledged high alert is **re-raised** every
``reraise_after`` (an ``alert_events`` row ``re-raised``, ``reraised_at`` and
``reraise_count`` on the alert, first in the open queue).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
from pathlib import Path

import polars as pl

from .errors import InputError, OutputError
from .queue import QUEUE_COLUMNS, SEVERITY_TIER
from .schema import TS_DTYPE
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
    """create table if not exists silences (
        silence_id varchar primary key, patients varchar, rules varchar, packs varchar,
        severity varchar, labels varchar, author varchar, reason varchar,
        starts_at timestamptz, ends_at timestamptz, created_at timestamptz,
        expired_at timestamptz, expired_by varchar)""",
    """create table if not exists silence_events (
        silence_id varchar, happened_at timestamptz, event varchar, actor varchar,
        note varchar)""",
]
#: columns added to ``alerts`` by alert hygiene (a store written before gets them on its
#: next write; they stay null for a run with --no-hygiene)
_HYGIENE_DDL = {"suppressed_by": "varchar", "flapping": "boolean", "flap_count": "bigint",
                "group_key": "varchar", "group_size": "bigint", "group_rules": "varchar",
                "reraised_at": "timestamptz", "reraise_count": "bigint"}

#: what an incremental run reads back (:mod:`engine.incremental`): every clean reading, each
#: (patient, rule)'s episode-kernel state at the last run's as_of (µs; null: none), and the
#: episodes before ranking
_HISTORY_DDL = [
    """create table if not exists readings (
        patient_id varchar, ts timestamptz, metric varchar, value double, unit varchar,
        source varchar)""",
    """create table if not exists rule_state (
        patient_id varchar, rule_id varchar, opened bigint, since bigint, last bigint,
        run bigint, fresh bigint, false_at bigint, prev bigint)""",
    """create table if not exists episodes (
        patient_id varchar, rule_id varchar, pack varchar, severity varchar, title varchar,
        opened_at timestamptz, condition_since timestamptz, last_seen_at timestamptz,
        resolved_at timestamptz, evidence varchar, reason varchar, labels varchar)""",
]
#: columns added to ``runs`` by incremental runs
_RUNS_DDL = {"new_readings": "bigint", "late_readings": "bigint",
             "rescored_patients": "bigint", "incremental": "boolean"}

#: the open queue as a platform fetches it: open alerts not snoozed into the future and not
#: closed by a nurse, most urgent first (``now`` is a bound timestamp)
OPEN_QUEUE_SQL = """
select * from alerts
where status = 'open' and workflow <> 'closed'
  and (workflow <> 'snoozed' or snoozed_until <= $now)
  and suppressed_by is null
order by reraised_at is null, priority
"""

_LOCK = re.compile(r"PID (\d+)")
#: what DuckDB says when the disk refuses a write (the file it was writing, then the reason)
_DISK = re.compile(r'(?:Could not write (?:to )?file "(?P<file>[^"]+)"\s*:\s*)?'
                   r'(?P<why>No space left on device|File too large|Disk quota exceeded)')


def _disk_refused(exc: BaseException) -> str | None:
    """The words for a write the disk refused (``the disk refused a write to q.duckdb.wal (No
    space left on device: …)``), or None when ``exc`` is another error."""
    m = _DISK.search(str(exc))
    if m is None:
        return None
    target = f" to {Path(m['file']).name}" if m["file"] else ""
    return (f"the disk refused a write{target} ({m['why']}: the disk is full, or a quota or "
            "file-size limit was reached)")


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
    """A connection to the store; a new store file (and its write-ahead log) is created
    owner-only (0600): it holds patients' alerts."""
    import duckdb

    new = not read_only and not path.exists()
    old = os.umask(0o077) if new else None
    try:
        con = _Connection(duckdb.connect(str(path), read_only=read_only))
        if new and path.exists():
            os.chmod(path, 0o600)
        return con
    except duckdb.IOException as exc:
        text = str(exc)
        if "lock" in text.lower():
            pid = _LOCK.search(text)
            who = f" (process {pid.group(1)})" if pid else ""
            raise OutputError(f"{path}: another veille run is writing this store{who}; "
                              "nothing was written. Run again once it has finished.") from None
        disk = _disk_refused(exc)
        if disk:
            raise OutputError(f"{path}: cannot be opened as a queue store: {disk}; nothing "
                              "was written. Free some space and run again.") from None
        raise OutputError(f"{path}: cannot be opened as a queue store ({text}).") from None
    except duckdb.Error as exc:
        raise OutputError(f"{path}: cannot be opened as a queue store ({exc}).") from None
    finally:
        if old is not None:
            os.umask(old)


@contextlib.contextmanager
def _owner_only():
    """While a store is written, files are created owner-only: DuckDB creates the store's
    write-ahead log (``.wal``) at a commit and removes it at the checkpoint, with the process's
    umask, and it holds patients' alerts (it stays when the disk refuses the checkpoint)."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


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


def _migrate(con) -> None:
    """Create the store's tables, and add the hygiene columns to a store written before."""
    for ddl in _DDL:
        con.run(ddl)
    for col, kind in _HYGIENE_DDL.items():
        con.run(f"alter table alerts add column if not exists {col} {kind}")
    for ddl in _HISTORY_DDL:
        con.run(ddl)
    for col, kind in _RUNS_DDL.items():
        con.run(f"alter table runs add column if not exists {col} {kind}")


def _begin_write(con, path: Path) -> None:
    """Start a write: refuse a file that is not a store, open the transaction, create or
    migrate the tables and record the schema version (a new store file is created owner-only
    by :func:`_connect`)."""
    _check_schema(con, path)
    con.run("begin transaction")
    _migrate(con)
    con.run("insert or replace into store_meta values ('schema_version', ?)", [SCHEMA_VERSION])


def _reraise(con, as_of: dt.datetime, after: dt.timedelta, severities) -> list:
    """Raise again the open, unacknowledged, shown alerts of ``severities`` left waiting
    ``after`` since their opening or their last re-raise (as of the run's time)."""
    rows = con.all(
        "select alert_id, coalesce(reraised_at, opened_at) from alerts where status = 'open' "
        "and workflow = 'new' and suppressed_by is null and severity in (select unnest(?))",
        [list(severities)])
    due = [a for a, since in rows if since is not None and as_of - since >= after]
    if due:
        con.run("update alerts set reraised_at = ?, reraise_count = coalesce(reraise_count, 0)"
                " + 1 where alert_id in (select unnest(?))", [as_of, due])
    return [(a, "re-raised", f"unacknowledged for {after} or more") for a in due]


@_owner_only()
def write_run(path: str | Path, result, *, engine=None, input_path=None,
              started_at: dt.datetime | None = None,
              reraise_after: dt.timedelta | None = None, reraise=("high",),
              history=None) -> int:
    """Record a run (:class:`engine.pipeline.Result`) in the store at ``path`` (created when
    missing, owner-only), in one transaction; returns the run id. With ``reraise_after``, an
    open, unacknowledged alert of a ``reraise`` severity is re-raised (:func:`_reraise`).

    With ``history`` (:class:`engine.incremental.History`, the run scored with it), the run's
    new readings, every (patient, rule)'s state and the episodes are kept for the next run;
    the alerts of re-scored patients that the run no longer finds are withdrawn. Without it,
    the store stops keeping history (its next run scores its input alone)."""
    from . import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    con = _connect(path)
    committed = None
    try:
        # a run an earlier checkpoint left in the write-ahead log goes into the store file
        # first: on a disk still full this fails here, before anything of this run is written
        con.run("checkpoint")
        _begin_write(con, path)
        if history is not None:
            last = con.one("select max(run_id) from runs")[0]
            if last != history.last_run:
                raise OutputError(f"{path}: another run was recorded since this one read the "
                                  "store; nothing was written. Run again.")
        run_id = con.one("select nextval('run_ids')")[0]
        now = dt.datetime.now(dt.timezone.utc)
        q = result.queue.select(list(QUEUE_COLUMNS)
                                + [c for c in _HYGIENE_DDL if c in result.queue.columns])
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
            elif old["status"] == "resolved" and r["status"] == "open":
                events.append((r["alert_id"], "reopened", "late readings re-scored the "
                               "patient"))
            if SEVERITY_TIER.get(r["severity"], 3) < SEVERITY_TIER.get(old["severity"], 3):
                events.append((r["alert_id"], "severity_raised",
                               f"{old['severity']} -> {r['severity']}"))
        raised = {a for a, e, _ in events if e == "severity_raised"}
        con.run("""
            insert into alerts by name
            select q.*, ? as first_run, ? as last_run, 'new' as workflow,
                   null as workflow_by, null as workflow_at, null as snoozed_until
            from q where alert_id not in (select alert_id from alerts)""", [run_id, run_id])
        # a run without hygiene leaves no stale reason behind
        extra = "".join(f"{c} = q.{c}, " if c in q.columns else f"{c} = null, "
                        for c in list(_HYGIENE_DDL)[:6])
        con.run(f"""
            update alerts set {extra}
                   severity = q.severity, risk = q.risk,
                   risk_factors = q.risk_factors, status = q.status,
                   last_seen_at = q.last_seen_at, resolved_at = q.resolved_at, title = q.title,
                   reason = q.reason, evidence = q.evidence, labels = q.labels,
                   priority = q.priority, patient_rank = q.patient_rank, last_run = ?
            from q where alerts.alert_id = q.alert_id""", [run_id])
        if raised:
            # an acknowledged alert whose severity rises is the team's to see again
            con.run("update alerts set workflow = 'new' where workflow = 'acknowledged' "
                        "and alert_id in (select unnest(?))", [sorted(raised)])
        if reraise_after is not None and result.as_of is not None:
            events += _reraise(con, result.as_of, reraise_after, reraise)
        events += _keep_history(con, history, q)
        if events:
            # one statement for the run's events (a first run opens every alert: one insert
            # per event took about a millisecond each, seconds for a large cohort)
            con.register("ev", pl.DataFrame(
                events, schema={"alert_id": pl.String, "event": pl.String,
                                "detail": pl.String}, orient="row").to_arrow())
            con.run("insert into alert_events select alert_id, ? as run_id, ? as happened_at, "
                    "event, 'veille' as actor, null as note, detail from ev", [run_id, now])
        rep = result.report
        model = getattr(engine, "model", None) if engine is not None else None
        con.run("insert into runs (run_id, started_at, finished_at, as_of, input, "
                "input_sha256, rows_in, rows_used, rows_quarantined, duplicates_collapsed, "
                "packs, model_name, model_sha256, engine_version, lang, alerts, opened, "
                "resolved) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            run_id, started_at or now, dt.datetime.now(dt.timezone.utc), result.as_of,
            None if input_path is None else str(input_path),
            None if input_path is None else file_sha256(input_path), rep.rows_in,
            rep.rows_used, rep.rows_quarantined, rep.duplicates_collapsed,
            pack_provenance(engine.ruleset) if engine is not None else None,
            None if model is None else model.name, None if model is None else model.sha256,
            __version__, getattr(engine, "lang", None), q.height, opened, resolved])
        if history is not None:
            con.run("update runs set new_readings = ?, late_readings = ?, "
                    "rescored_patients = ?, incremental = ? where run_id = ?",
                    [history.new_readings.height, history.late,
                     len(history.rescored) if history.incremental else 0,
                     history.incremental, run_id])
        quarantine = result.quarantine.with_columns(pl.lit(run_id, pl.Int64).alias("run_id"))
        con.register("quar", quarantine.to_arrow())
        has = con.one("select count(*) from information_schema.tables where table_name = "
                      "'quarantine'")[0]
        if not has:
            con.run("create table quarantine as select run_id, * exclude (run_id) from quar "
                    "where false")
        con.run("insert into quarantine by name select * from quar")
        con.run("commit")
        committed = int(run_id)
        # the commit is in the write-ahead log (durable); copy it into the store file now, so
        # that a disk that refuses it is said, not left to the silent checkpoint of close()
        con.run("checkpoint")
        return committed
    except BaseException as exc:
        if committed is not None:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            import duckdb

            if not isinstance(exc, duckdb.Error):
                raise
            why = _disk_refused(exc) or f"the checkpoint failed ({exc})"
            raise OutputError(
                f"{path}: run {committed} is recorded, but {why} while it was copied from the "
                f"store's write-ahead log ({path.name}.wal) into the store file. The store "
                "opens with it (the log is read back); free some space: the next write to "
                "the store completes the copy.") from None
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
            disk = _disk_refused(exc)
            if disk:
                raise OutputError(f"{path}: the run could not be recorded: {disk}; nothing "
                                  "was written, the store is as the previous run left it. "
                                  "Free some space and run again.") from None
            raise OutputError(f"{path}: the run could not be recorded ({exc}); the store is "
                              "as the previous run left it.") from None
        raise
    finally:
        con.close()


def _keep_history(con, history, q: pl.DataFrame) -> list:
    """Write what the next incremental run reads (the run's part of :func:`write_run`'s
    transaction); returns the events of the alerts withdrawn."""
    if history is None:
        con.run("delete from store_meta where key = 'history'")
        return []
    from .incremental import STATE_COLUMNS

    con.register("new_readings", history.new_readings.to_arrow())
    con.run("insert into readings by name select * from new_readings")
    con.run("delete from rule_state")
    state = history.resume.state_after().select(list(STATE_COLUMNS))
    con.register("new_state", state.to_arrow())
    con.run("insert into rule_state by name select * from new_state")
    con.run("delete from episodes")
    con.register("new_episodes", history.merged.to_arrow())
    con.run("insert into episodes by name select * from new_episodes")
    con.run("insert or replace into store_meta values ('history', ?)", [history.fingerprint])
    events = []
    if history.incremental and history.rescored:
        gone = con.all("select alert_id from alerts where patient_id in (select unnest(?)) "
                       "and alert_id not in (select alert_id from q)",
                       [sorted(history.rescored)])
        ids = [g[0] for g in gone]
        if ids:
            con.run("delete from alerts where alert_id in (select unnest(?))", [ids])
            events = [(a, "withdrawn", "late readings re-scored the patient") for a in ids]
    return events


def read_history(path: Path) -> dict | None:
    """What an incremental run needs from the store at ``path`` before it scores: the history
    fingerprint (None: the store keeps no history), the last run's id and ``as_of``, the
    rule states and the episodes; None for a store without a run."""
    from .episodes import EPISODE_COLUMNS
    from .incremental import STATE_COLUMNS

    con = _connect(path, read_only=True)
    try:
        _check_schema(con, path)
        tables = {r[0] for r in con.all("select table_name from information_schema.tables")}
        if "runs" not in tables:
            return None
        last = con.one("select run_id, as_of from runs order by run_id desc limit 1")
        if last is None:
            return None
        fp = con.one("select value from store_meta where key = 'history'")
        as_of = None if last[1] is None else last[1].astimezone(dt.timezone.utc)
        out = {"last_run": int(last[0]), "as_of": as_of, "fingerprint": None}
        if fp is None or "rule_state" not in tables:
            return out
        ts_cols = [c for c, t in EPISODE_COLUMNS.items() if t == TS_DTYPE]
        states = con.frame("select * from rule_state").cast(STATE_COLUMNS)
        episodes = con.frame("select * exclude (" + ", ".join(ts_cols) + "), "
                             + ", ".join(f"epoch_us({c}) as {c}" for c in ts_cols)
                             + " from episodes")
        episodes = episodes.with_columns(
            pl.from_epoch(c, "us").dt.replace_time_zone("UTC") for c in ts_cols
        ).select([pl.col(c).cast(t) for c, t in EPISODE_COLUMNS.items()])
        return {**out, "fingerprint": fp[0], "states": states, "episodes": episodes}
    finally:
        con.close()


def _readings(frame: pl.DataFrame) -> pl.DataFrame:
    from .incremental import READING_COLUMNS

    return frame.with_columns(pl.from_epoch("ts", "us").dt.replace_time_zone("UTC")).select(
        [pl.col(c).cast(t) for c, t in READING_COLUMNS.items()])


def stored_matches(path: Path, keys: pl.DataFrame) -> pl.DataFrame:
    """The stored readings at the (patient, metric, time) of ``keys``, with their value."""
    if keys.height == 0:
        return pl.DataFrame(schema={"patient_id": pl.String, "metric": pl.String,
                                    "ts": TS_DTYPE, "value": pl.Float64})
    con = _connect(path, read_only=True)
    try:
        con.register("k", keys.select("patient_id", "metric", "ts").to_arrow())
        got = con.frame("select r.patient_id, r.metric, epoch_us(r.ts) as ts, r.value "
                        "from readings r join k on r.patient_id = k.patient_id and "
                        "r.metric = k.metric and r.ts = k.ts")
    finally:
        con.close()
    return got.with_columns(pl.from_epoch("ts", "us").dt.replace_time_zone("UTC")
                            .cast(TS_DTYPE), pl.col("value").cast(pl.Float64))


def read_back(path: Path, bounds: dict, t_prev: dt.datetime, full) -> pl.DataFrame:
    """The stored readings an incremental run needs: per metric, those after its bound
    (``bounds``: metric -> time, None for the whole series; a metric absent: ``t_prev``) and
    each series' latest one at or before it; every reading of the patients in ``full`` (None:
    of every patient)."""
    con = _connect(path, read_only=True)
    cols = "r.patient_id, epoch_us(r.ts) as ts, r.metric, r.value, r.unit, r.source"
    try:
        if full is None:
            return _readings(con.frame(f"select {cols} from readings r"))
        con.register("b", pl.DataFrame(
            {"metric": list(bounds), "bound": [t_prev if v is None else v
                                               for v in bounds.values()],
             "whole": [v is None for v in bounds.values()]},
            schema={"metric": pl.String, "bound": TS_DTYPE, "whole": pl.Boolean}).to_arrow())
        con.register("f", pl.DataFrame({"patient_id": sorted(full)},
                                       schema={"patient_id": pl.String}).to_arrow())
        near = ("(r.patient_id in (select patient_id from f) or coalesce(b.whole, false) "
                "or r.ts > coalesce(b.bound, $t))")
        frame = con.frame(f"""
            select {cols} from readings r left join b on r.metric = b.metric where {near}
            union all
            select {cols} from readings r join (
                select r.patient_id, r.metric, max(r.ts) as ts
                from readings r left join b on r.metric = b.metric where not {near}
                group by r.patient_id, r.metric) l
              on r.patient_id = l.patient_id and r.metric = l.metric and r.ts = l.ts""",
                          {"t": t_prev})
    finally:
        con.close()
    return _readings(frame)


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
        hygiene = "suppressed_by" in {r[0] for r in con.all(
            "select column_name from information_schema.columns where table_name = 'alerts'")}
        if status == "open":
            sql = OPEN_QUEUE_SQL if hygiene else OPEN_QUEUE_SQL.replace(
                "and suppressed_by is null", "").replace("reraised_at is null, ", "")
            df = con.frame(sql, {"now": now})
            if hygiene:
                df = _honour(df, _silences(con, now) + _snoozes(con, now), now)
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


def _honour(df: pl.DataFrame, silences: list, now: dt.datetime) -> pl.DataFrame:
    """The open alerts no active silence or snooze covers (those added since the run)."""
    if not silences or df.height == 0:
        return df
    keep = []
    for r in df.iter_rows(named=True):
        a = {**r, "_labels": json.loads(r["labels"] or "{}")}
        keep.append(not any(s.starts_at <= now < s.ends_at and s.matches(a) for s in silences))
    return df.filter(pl.Series(keep, dtype=pl.Boolean))


def _silences(con, now: dt.datetime) -> list:
    """The store's silences not expired by hand and not yet ended, as
    :class:`engine.hygiene.Silence` s."""
    from .hygiene import Silence
    from .ruleset.packs import AlertMatcher

    tables = {r[0] for r in con.all("select table_name from information_schema.tables")}
    if "silences" not in tables:
        return []
    rows = con.frame("select * from silences where expired_at is null and ends_at > $now",
                     {"now": now})
    out = []
    for r in rows.iter_rows(named=True):
        def listed(key):
            v = json.loads(r[key]) if r[key] else None
            return frozenset(v) if v is not None else None
        out.append(Silence(r["silence_id"], AlertMatcher(
            rules=listed("rules"), packs=listed("packs"), severity=listed("severity"),
            labels=tuple(sorted(json.loads(r["labels"] or "{}").items()))),
            r["starts_at"], r["ends_at"], r["author"] or "", r["reason"] or "",
            patients=listed("patients")))
    return out


def _snoozes(con, now: dt.datetime) -> list:
    """Each snoozed alert's snooze as a silence of its patient and rule only: a later alert
    of the same rule waits too, the opposite direction (another rule) never does."""
    from .hygiene import Silence
    from .ruleset.packs import AlertMatcher

    rows = con.all("select alert_id, patient_id, rule_id, workflow_at, snoozed_until, "
                   "workflow_by from alerts where workflow = 'snoozed' and snoozed_until > ?",
                   [now])
    return [Silence(f"snooze:{a}", AlertMatcher(rules=frozenset([rule])),
                    dt.datetime.min.replace(tzinfo=dt.timezone.utc), until, by or "",
                    patients=frozenset([pid])) for a, pid, rule, _, until, by in rows]


def store_silences(path: str | Path, now: dt.datetime | None = None) -> list:
    """The active silences and snoozes of the store at ``path`` (none when it does not exist
    yet), for a run's hygiene stage."""
    path = Path(path)
    if not path.exists():
        return []
    con = _connect(path, read_only=True)
    try:
        _check_schema(con, path)
        tables = {r[0] for r in con.all("select table_name from information_schema.tables")}
        if "alerts" not in tables:
            return []
        now = now or dt.datetime.now(dt.timezone.utc)
        return _silences(con, now) + _snoozes(con, now)
    finally:
        con.close()


@_owner_only()
def add_silence(path: str | Path, *, by: str, reason: str, ends_at: dt.datetime,
                starts_at: dt.datetime | None = None, patients=None, rules=None, packs=None,
                severity=None, labels: dict | None = None,
                now: dt.datetime | None = None) -> str:
    """Record a silence (see :class:`engine.hygiene.Silence`); returns its id. It must match
    on something (a silence of every alert of every patient is refused), have an author and
    a reason, and end after it starts and after now."""
    import hashlib

    now = now or dt.datetime.now(dt.timezone.utc)
    starts_at = starts_at or now
    if not by or not by.strip():
        raise InputError("--by must name who silences (an initials or a staff id).")
    if not reason or not reason.strip():
        raise InputError("--reason must say why (e.g. 'hospital stay'): a silence hides "
                         "alerts, the team must know why.")
    if not (patients or rules or packs or severity or labels):
        raise InputError("a silence must match something: give --patient, --rule, --pack, "
                         "--severity or --label (a silence of every alert is refused).")
    for t, name in ((starts_at, "--starts"), (ends_at, "--until")):
        if t.tzinfo is None:
            raise InputError(f"{name} needs a time zone (e.g. 2026-02-15T08:00+01:00).")
    if ends_at <= starts_at or ends_at <= now:
        raise InputError(f"--until {ends_at.isoformat()} must be after the start and after "
                         "now.")
    for s in severity or ():
        if s not in SEVERITY_TIER:
            raise InputError(f"--severity must be high, medium or low; got {s!r}.")

    def text(v):
        return None if not v else json.dumps(sorted(v))
    key = json.dumps([text(patients), text(rules), text(packs), text(severity), labels,
                      by, reason, now.isoformat()], default=str)
    sid = hashlib.sha256(key.encode()).hexdigest()[:12]
    path = Path(path)
    con = _connect(path)
    try:
        _begin_write(con, path)
        con.run("insert into silences values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, null, null)",
                [sid, text(patients), text(rules), text(packs), text(severity),
                 json.dumps(labels or {}, sort_keys=True), by.strip(), reason.strip(),
                 starts_at, ends_at, now])
        con.run("insert into silence_events values (?, ?, 'created', ?, ?)",
                [sid, now, by.strip(), reason.strip()])
        con.run("commit")
    finally:
        con.close()
    return sid


@_owner_only()
def expire_silence(path: str | Path, silence_id: str, *, by: str,
                   note: str | None = None, now: dt.datetime | None = None) -> None:
    """End a silence now (recorded with who and why)."""
    if not by or not by.strip():
        raise InputError("--by must name who expires the silence.")
    now = now or dt.datetime.now(dt.timezone.utc)
    path = Path(path)
    if not path.exists():
        raise InputError("no queue store there.", path=str(path))
    con = _connect(path)
    try:
        _check_schema(con, path, written=True)
        _migrate(con)
        row = con.one("select expired_at from silences where silence_id = ?", [silence_id])
        if row is None:
            raise InputError(f"no silence {silence_id!r} in the store (veille queue silence "
                             "list shows the ids).", path=str(path))
        if row[0] is not None:
            raise InputError(f"silence {silence_id!r} was already expired at "
                             f"{row[0].isoformat()}.", path=str(path))
        con.run("begin transaction")
        con.run("update silences set expired_at = ?, expired_by = ? where silence_id = ?",
                [now, by.strip(), silence_id])
        con.run("insert into silence_events values (?, ?, 'expired', ?, ?)",
                [silence_id, now, by.strip(), note])
        con.run("commit")
    finally:
        con.close()


def list_silences(path: str | Path, *, every: bool = False,
                  now: dt.datetime | None = None) -> pl.DataFrame:
    """The store's silences: the active and future ones, or ``every`` one."""
    now = now or dt.datetime.now(dt.timezone.utc)
    con = _connect(Path(path), read_only=True)
    try:
        _check_schema(con, Path(path), written=True)
        tables = {r[0] for r in con.all("select table_name from information_schema.tables")}
        if "silences" not in tables:
            return pl.DataFrame()
        where = "" if every else "where expired_at is null and ends_at > $now"
        return con.frame(f"select * from silences {where} order by starts_at",
                         {"now": now} if not every else None)
    finally:
        con.close()


@_owner_only()
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
