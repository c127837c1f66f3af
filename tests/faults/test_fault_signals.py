"""SIGINT and SIGTERM stop a run cleanly: exit 130, a message saying what was and was not
written, no traceback, and the outputs either the previous run's or the new run's, complete."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import polars as pl
import pytest

from engine.synth import generate_cohort


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("into_s", [0.3, 2.0])
def test_a_signal_while_the_kernels_compile_stops_the_run_cleanly(tmp_path, sig, into_s):
    """A first run compiles the kernels (an empty cache): a signal then, inside numba's
    compiler, ended the process with a segmentation fault instead of exit 130."""
    c = generate_cohort(5, days=2, seed=5)
    c.telemetry.write_parquet(tmp_path / "t.parquet")
    c.patients.write_parquet(tmp_path / "p.parquet")
    out = tmp_path / "q.parquet"
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    # numba's cache follows VEILLE_CACHE_DIR unless NUMBA_CACHE_DIR is set (this process's
    # import of engine set it)
    env = {**{k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"},
           "PYTHONPATH": os.getcwd(), "VEILLE_CACHE_DIR": str(cache)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "score", str(tmp_path / "t.parquet"), "--patients",
         str(tmp_path / "p.parquet"), "--model", "none", "--out", str(out)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()
    assert first.startswith("compiling the kernels"), first
    time.sleep(into_s)                        # inside the compiler
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, (proc.returncode, first + stderr)
    assert "nothing was written" in stderr and "Traceback" not in stderr, stderr
    assert not out.exists() and not list(tmp_path.glob(".*"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_run_cleanly(tmp_path, sig):
    c = generate_cohort(20, days=7, seed=5)
    c.telemetry.write_parquet(tmp_path / "t.parquet")
    c.patients.write_parquet(tmp_path / "p.parquet")
    out = tmp_path / "q.parquet"
    args = [sys.executable, "-m", "cli", "score", str(tmp_path / "t.parquet"), "--patients",
            str(tmp_path / "p.parquet"), "--model", "none", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    # the first run may compile the kernels (a fresh clone): time the second
    assert subprocess.run(args, env=env, capture_output=True).returncode == 0
    t = time.monotonic()
    assert subprocess.run(args, env=env, capture_output=True).returncode == 0
    span = time.monotonic() - t
    out.unlink()
    for fraction in (0.6, 0.4, 0.2):            # stop it under way, before it can finish
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        time.sleep(fraction * span)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=300)
        if proc.returncode != 0:
            break
        out.unlink()
    else:
        pytest.skip("every run ended before the signal arrived")
    assert proc.returncode == 130, (proc.returncode, stderr)
    assert "Traceback" not in stderr
    assert "interrupted" in stderr and "written" in stderr
    # whatever was written is complete; no temporary file is left beside it
    if out.exists():
        pl.read_parquet(out)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_an_interrupt_between_the_journal_and_the_renames_completes_them(tmp_path,
                                                                           monkeypatch):
    from engine import sinks
    from engine.errors import Interrupted

    a, b = tmp_path / "q.parquet", tmp_path / "q.quarantine.parquet"
    sinks.write_frames([(pl.DataFrame({"run": [1]}), a, "alerts"),
                        (pl.DataFrame({"run": [1]}), b, "quarantine")])
    real = os.replace
    calls = []

    def stop_at_second_rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(sinks.os, "replace", stop_at_second_rename)
    with pytest.raises(Interrupted, match="were completed"):
        sinks.write_frames([(pl.DataFrame({"run": [2]}), a, "alerts"),
                            (pl.DataFrame({"run": [2]}), b, "quarantine")])
    monkeypatch.setattr(sinks.os, "replace", real)
    assert pl.read_parquet(a)["run"].to_list() == [2]
    assert pl.read_parquet(b)["run"].to_list() == [2]
    assert not list(tmp_path.glob(".*"))


def _child(folder, code: str, *, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` as a main module (``python -m``, the way the tests and many schedulers start
    ``python -m cli``) in a fresh interpreter that imports the repository's modules."""
    (folder / "child_main.py").write_text(code)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), os.getcwd()])}
    return subprocess.run([sys.executable, "-m", "child_main"], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_modules_load_stops_the_run_at_once(tmp_path, sig):
    """Before this, a signal while `veille` imported numba, polars and the commands (a second
    or two at every start) killed the process with the signal's own status (SIGTERM) or a
    KeyboardInterrupt traceback (Ctrl-C)."""
    done = _child(tmp_path, f"""
import os, sys, time
import cli
real = cli._build
def build():
    os.kill(os.getpid(), {int(sig)})
    time.sleep(30)          # the handler ends the process first
    return real()
cli._build = build
sys.argv = ["veille", "rules", "validate"]
cli.main()
""")
    assert done.returncode == 130, (done.returncode, done.stderr)
    assert done.stderr == "interrupted while starting: nothing was written.\n", done.stderr


def test_a_signal_typer_catches_is_still_reported(tmp_path):
    """Typer turns a KeyboardInterrupt outside a command's own handler (while it reads the
    arguments, or in `rules validate`) into a silent exit 130."""
    done = _child(tmp_path, """
import sys
import cli
import engine.commands.rules as rules
def load(paths, sites):
    raise KeyboardInterrupt
rules._load = load
sys.argv = ["veille", "rules", "validate"]
cli.main()
""")
    assert done.returncode == 130, (done.returncode, done.stderr)
    assert "interrupted: nothing was written." in done.stderr and "Traceback" not in done.stderr


def test_the_status_is_the_commands_even_when_cpython_recorded_an_interrupt(tmp_path):
    """CPython notes a KeyboardInterrupt that crosses C code running Python source (an
    extension's PyRun_String) as unhandled, and at the end of the interpreter's teardown then
    exits by SIGINT whatever the program did: a run stopped cleanly (exit 130, its message
    printed) came back as killed by SIGINT. `veille` ends without that teardown."""
    done = _child(tmp_path, """
import ctypes, sys
import cli
import engine.commands.rules as rules
real = rules.say
def say(*parts, **kw):      # the command's last act: its summary line
    real(*parts, **kw)
    ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt").value = 1
rules.say = say
sys.argv = ["veille", "rules", "validate"]
cli.main()
""")
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert "valid" in done.stdout.lower(), done.stdout


def test_a_keyboard_interrupt_reported_as_a_system_error_is_a_stop(capsys):
    """A signal handled while a compiled kernel's dispatcher runs Python code reaches the
    command as `SystemError: ... returned a result with an exception set`, caused by the
    KeyboardInterrupt (seen once in a few hundred stopped runs): it is a stop, not a bug."""
    from engine.commands._common import friendly_errors

    @friendly_errors
    def command():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise SystemError("CPUDispatcher(<function sizes>) returned a result with an "
                              "exception set") from exc

    with pytest.raises(SystemExit) as stop:
        command()
    assert stop.value.code == 130
    assert "interrupted before the outputs were written" in capsys.readouterr().err

    @friendly_errors
    def bug():
        raise SystemError("a real bug")

    with pytest.raises(SystemError, match="a real bug"):
        bug()
