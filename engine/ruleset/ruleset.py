"""A loaded set of rule packs: :func:`load_rules` and :class:`RuleSet`."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from ..errors import RuleError
from .packs import CompiledPack, CompiledRule
from .format.diagnostics import Diagnostics, did_you_mean
from .compile.pack import PackCompiler
from .format.parse import parse_pack, parse_site
from .format.source import Source, read_source
from .compile.inhibit import compile_inhibitions
from .compile.tests import compile_tests
from .i18n import DEFAULT_LANG


def _default_scores() -> dict:
    from ..scores import SCORES
    return SCORES


def inside(path: Path, folder: Path) -> Path | None:
    """Where ``path`` leads once every link is followed, when that is inside ``folder`` (links
    followed too); None when it leads outside (or the links loop)."""
    try:
        target, root = path.resolve(), folder.resolve()
    except (OSError, RuntimeError):          # a link loop (RuntimeError before Python 3.13)
        return None
    return target if target.is_relative_to(root) else None


def pack_files(paths: Sequence[str | Path], diags: Diagnostics) -> list[Path]:
    """Files named by ``paths``: a file as is, a directory's ``*.yaml`` / ``*.yml`` (not its
    subfolders, so ``rules/sites/`` is never read as packs). A folder's file that is a link
    leading outside the folder is refused, not read: what a folder gives is in it (a file
    named on its own is read where it leads)."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
            if not found:
                diags.add(str(p), 0, 0, "no rule pack (*.yaml) in this folder.")
            for f in found:
                if inside(f, p) is not None:
                    out.append(f)
                    continue
                try:
                    where = f"leads outside the folder {p} (to {f.resolve()})"
                except (OSError, RuntimeError):
                    where = "leads nowhere (a loop of links)"
                diags.add(str(f), 0, 0, f"is a link that {where}; nothing was read from it.",
                          "A folder's rule files must be in it: copy the file into the "
                          "folder, or give the file by its own path.")
        elif p.exists():
            out.append(p)
        else:
            diags.add(str(p), 0, 0, "file or folder not found.")
    return list(dict.fromkeys(out))


class RuleSet:
    """Rule packs ready to evaluate.

    Attributes
    ----------
    packs : list of CompiledPack
        Effective packs (site overrides applied), in load order.
    rules : list of CompiledRule
        Every enabled rule of every pack.
    sites : tuple of str
        The site override files applied.
    """

    def __init__(self, packs: list[CompiledPack], sites: Sequence[str] = ()):
        self.packs = packs
        self.sites = tuple(sites)
        self.rules: list[CompiledRule] = [r for p in packs for r in p.rules if r.enabled]

    @property
    def inhibitions(self) -> tuple:
        """Every pack's inhibition rules (:class:`engine.ruleset.packs.InhibitRule`)."""
        return tuple(i for p in self.packs for i in p.inhibit)

    def __repr__(self) -> str:
        return (f"RuleSet({len(self.packs)} packs, {len(self.rules)} rules"
                + (f", sites {', '.join(self.sites)}" if self.sites else "") + ")")

    def pack(self, name: str) -> CompiledPack:
        for p in self.packs:
            if p.name == name:
                return p
        raise RuleError(f"unknown pack '{name}'. "
                        + did_you_mean(name, [p.name for p in self.packs], noun="packs"))

    def find_rule(self, rule_id: str) -> tuple[CompiledPack, CompiledRule]:
        """The pack and rule (enabled or not) with this id; RuleError with suggestions if none."""
        for p in self.packs:
            for r in p.rules:
                if r.id == rule_id:
                    return p, r
        known = [r.id for p in self.packs for r in p.rules]
        raise RuleError(f"unknown rule '{rule_id}'. " + did_you_mean(rule_id, known,
                                                                     noun="rules"))

    def evaluate(self, telemetry: pl.DataFrame, patients: pl.DataFrame | None = None, *,
                 until=None, lang: str = DEFAULT_LANG) -> pl.DataFrame:
        """Episodes of every enabled rule, one row per episode.

        Parameters
        ----------
        telemetry : pl.DataFrame
            Clean telemetry (patient_id, ts, metric, value), as ingest gives it.
        patients : pl.DataFrame, optional
            Patient context (programme, age, spo2_scale, enrolled_at...). Without it, or for a
            patient not in it, only packs with ``cohort: any`` apply.
        until : datetime, optional
            End of evaluation: later telemetry is ignored and a pack's cadence
            (``evaluate_every``) runs up to it — pass the run's "now" so a silence up to now is
            seen.
        lang : {'fr', 'en'}, default 'fr'
            The language of the titles and reasons (rules/README.md, "Languages").

        Returns
        -------
        pl.DataFrame
            patient_id, rule_id, pack, severity, title, opened_at (when it fired),
            condition_since (when the condition started to hold), last_seen_at (last timeline
            time it held), resolved_at (null while open), evidence (JSON object: name ->
            {value, unit} at opened_at), reason (one sentence). Sorted by patient_id,
            opened_at, rule_id.
        """
        from ..pipeline import evaluate_packs

        return evaluate_packs(self.packs, telemetry, patients, until=until, lang=lang)

    def run_tests(self, *, pack: str | None = None, name: str | None = None):
        """Run every pack's tests (and every site's tests); returns a TestReport. ``name``
        keeps the tests whose name matches: a glob ('*hypo*') or a case-insensitive part."""
        from .unittest import run_tests
        return run_tests(self, pack=pack, name=name)

    def explain(self, rule_id: str, *, patient: dict | None = None, where: str = "") -> str:
        """A plain-text account of one rule (see :func:`engine.ruleset.explain.explain_rule`);
        with ``patient`` (a patients-table row, named ``where``) the values it gets."""
        from .explain import explain_rule
        return explain_rule(self, rule_id, patient, where)


def _load(pack_sources: list[Source], site_sources: list[Source], diags: Diagnostics,
          scores) -> RuleSet:
    scores = _default_scores() if scores is None else scores
    drafts = []
    for src in pack_sources:
        draft = parse_pack(src, diags)
        if draft.model is not None:
            drafts.append((src, draft))
    seen: dict[str, Source] = {}
    for src, draft in drafts:
        model = draft.model
        if model.pack in seen:
            line, col = src.pos(("pack",))
            diags.add(src.label, line, col, f"pack '{model.pack}' is already loaded from "
                      f"{seen[model.pack].label}.", "Each pack name must be unique.")
        seen.setdefault(model.pack, src)
    sites = []
    for src in site_sources:
        site = parse_site(src, diags)
        if site is None:
            continue
        for name in site.packs:
            if name not in seen:
                line, col = src.key_pos(("packs", name))
                diags.add(src.label, line, col, f"site '{site.site}' overrides pack '{name}', "
                          "which is not loaded.", did_you_mean(name, seen, noun="packs"))
        sites.append((src, site))
    zone = _site_time_zone(sites, diags)
    packs = []
    for src, draft in drafts:
        model, broken_rules = draft.model, draft.broken_rules
        failed = bool(draft.broken_names or broken_rules) or len(diags) > 0
        mine = [(s, site) for s, site in sites if model.pack in site.packs]
        compiler = PackCompiler(src, model, scores, diags, broken=draft.broken_names,
                                failed=failed, rule_index=draft.rule_index)
        base = compiler.compile()
        rule_ids = [r.id for r in model.rules]
        cohorts = base.cohorts if base is not None else None
        tests = compile_tests(model.pack, rule_ids, cohorts, src, model.tests, None, diags,
                              broken_rules=broken_rules, index=draft.test_index, compiled=base)
        pack = base
        if base is not None:
            base.tests = tests
            if mine:
                pack = compiler.compile(overrides=mine)      # a second pass over the params
        # a site's test patient defaults to the first cohort of the site's scope
        site_cohorts = pack.cohorts if pack is not None else cohorts
        site_tests = [t for s, site in mine
                      for t in compile_tests(model.pack, rule_ids, site_cohorts, s,
                                             site.packs[model.pack].tests, site.site, diags,
                                             broken_rules=broken_rules, compiled=pack)]
        if pack is None:
            continue
        if mine:
            pack.base = base
            pack.tests = list(base.tests) + site_tests
        if zone is not None:
            pack.time_zone = zone
        packs.append(pack)
    owner: dict[str, CompiledPack] = {}
    for p in packs:
        for r in p.rules:
            if r.id in owner and owner[r.id] is not p:
                line, col = (int(x) for x in r.origin.rsplit(":", 2)[1:])
                diags.add(p.path, line, col, f"rule id '{r.id}' is also used in pack "
                          f"'{owner[r.id].name}' ({owner[r.id].rule(r.id).origin}).",
                          "Rule ids must be unique across packs: prefix them with the pack.",
                          rule_id=r.id)
            owner.setdefault(r.id, p)
    by_name = {p.name: p for p in packs}
    for src, draft in drafts:
        if draft.model.pack in by_name and draft.model.inhibit:
            by_name[draft.model.pack].inhibit = compile_inhibitions(src, draft.model, packs,
                                                                    diags)
    diags.raise_if_any()
    return RuleSet(packs, [s.label for s in site_sources])


def _site_time_zone(sites, diags: Diagnostics) -> str | None:
    """The sites' ``time_zone`` (the zone of patients without a ``tz``): one IANA zone."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    zone, first = None, None
    for src, site in sites:
        z = site.time_zone
        if z is None:
            continue
        line, col = src.pos(("time_zone",))
        try:
            ok = ("/" in z or z == "UTC") and ZoneInfo(z) is not None
        except (ZoneInfoNotFoundError, ValueError):
            ok = False
        if not ok:
            diags.add(src.label, line, col, f"time_zone {z!r} is not an IANA time zone.",
                      "Write it like 'Europe/Paris'.")
            continue
        if zone is not None and z != zone:
            diags.add(src.label, line, col, f"time_zone {z!r} differs from {zone!r} set by "
                      f"{first}.", "The sites applied together describe one platform: give "
                      "each patient's own zone in the patients table's tz column instead.")
            continue
        zone, first = z, f"{src.label}:{line}:{col}"
    return zone


def load_rules(paths: Sequence[str | Path] | str | Path, sites: Sequence[str | Path] = (), *,
               scores: dict | None = None) -> RuleSet:
    """Load rule packs and optional site overrides; raise RuleError listing every mistake.

    Parameters
    ----------
    paths : path or sequence of paths
        Pack files, or folders whose ``*.yaml`` files are packs (a folder's ``sites/``
        subfolder is not read as packs).
    sites : sequence of paths
        Site override files (``rules/sites/<site>.yaml``), applied in order; a folder means
        all its ``*.yaml``.
    scores : dict, optional
        Score registry (name -> ScoreDef); default :data:`engine.scores.SCORES`.

    Examples
    --------
    >>> rs = load_rules("rules/")                       # doctest: +SKIP
    >>> rs.rules[0].id                                   # doctest: +SKIP
    'hf.weight_gain_2kg_3d'
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if isinstance(sites, (str, Path)):
        sites = [sites]
    diags = Diagnostics()
    pack_sources = [s for f in pack_files(paths, diags)
                    if (s := read_source(f, diags)) is not None]
    site_sources = [s for f in pack_files(sites, diags)
                    if (s := read_source(f, diags)) is not None] if sites else []
    return _load(pack_sources, site_sources, diags, scores)


def load_rules_text(packs: dict[str, str], sites: dict[str, str] | None = None, *,
                    scores: dict | None = None) -> RuleSet:
    """:func:`load_rules` from texts: ``{label: yaml_text}`` (labels appear in messages)."""
    diags = Diagnostics()
    pack_sources = [s for label, text in packs.items()
                    if (s := read_source(label, diags, text=text)) is not None]
    site_sources = [s for label, text in (sites or {}).items()
                    if (s := read_source(label, diags, text=text)) is not None]
    return _load(pack_sources, site_sources, diags, scores)
