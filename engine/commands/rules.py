"""``veille rules test | validate | explain``: rule packs as data, tested like code.

Each command parses its arguments, calls one library function of :mod:`engine.ruleset`, and
renders. Exit status: 0 success; 1 a pack test failed; 2 a rule file (or argument) has a mistake
the user can fix — printed as one paragraph with every ``file:line:col`` at once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import VeilleError
from ..paths import bundled
from ._common import fail as _fail
from ._common import say

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Validate, test and explain rule packs.")

Paths = Annotated[list[Path], typer.Argument(
    help="Rule pack files or folders (a folder's *.yaml; its sites/ subfolder is not a pack). "
         "Default: the bundled rules/.", show_default=False)]
Sites = Annotated[list[Path], typer.Option(
    "--site", help="Site override file (repeatable), e.g. rules/sites/meuse.yaml; its own tests "
                   "run too.")]


def _load(paths: list[Path], sites: list[Path]):
    from ..ruleset import load_rules
    try:
        return load_rules(paths or [bundled("rules")], sites)
    except VeilleError as exc:
        _fail(exc)


@app.command("test")
def test(paths: Paths = None, site: Sites = [],
         verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                               help="List passing tests too.")] = False,
         name: Annotated[str, typer.Option(
             "--name", help="Run only the tests whose name matches: a glob like '*hypo*', or "
                            "else any part of the name (case-insensitive).")] = None) -> None:
    """Run the tests inside rule packs (like promtool test rules); exit 1 on any failure."""
    rs = _load(paths or [], site)
    try:
        report = rs.run_tests(name=name)
    except VeilleError as exc:
        _fail(exc)
    if name is not None and not report.results:
        _fail(VeilleError(f"no test name matches {name!r}."))
    say(report.render(verbose=verbose))
    if not report.passed:
        raise typer.Exit(1)


@app.command("validate")
def validate(paths: Paths = None, site: Sites = []) -> None:
    """Check rule packs (schema, names, units, params, tests) without running anything."""
    rs = _load(paths or [], site)
    n_tests = sum(len(p.tests) for p in rs.packs)
    for p in rs.packs:
        extra = f" (sites: {', '.join(p.sites)})" if p.sites else ""
        say(f"ok  {p.path}: pack {p.name} {p.version}, {len(p.rules)} rules, "
            f"{len(p.tests)} tests{extra}")
    say(f"{len(rs.packs)} packs, {len(rs.rules)} enabled rules, {n_tests} tests: valid.")


@app.command("explain")
def explain(rule_id: Annotated[str, typer.Argument(help="A rule id, e.g. "
                                                        "hf.weight_gain_2kg_3d.")],
            rules: Annotated[list[Path], typer.Option(
                "--rules", help="Rule pack file or folder (repeatable). Default: the bundled "
                                "rules/.")] = [],
            site: Sites = [],
            patient: Annotated[str, typer.Option(
                "--patient", help="A patient id: also show the values this patient gets (care "
                                  "plan targets, context, time zone). Needs --patients.")] = None,
            patients: Annotated[Path, typer.Option(
                "--patients", help="The patients table (Parquet, CSV...) to read the patient "
                                   "from.")] = None) -> None:
    """Print a rule, its effective params with their origin, detectors and references."""
    if patient is not None and patients is None:
        _fail(VeilleError("--patient needs --patients, the patients table to read it from."))
    rs = _load(rules, site)
    try:
        row, where = None, ""
        if patient is not None:
            from ..patients import load_patients
            from ..ruleset.explain import find_patient
            row, where = find_patient(load_patients(str(patients)), patient, str(patients))
        text = rs.explain(rule_id, patient=row, where=where)
    except VeilleError as exc:
        _fail(exc)
    say(text)
