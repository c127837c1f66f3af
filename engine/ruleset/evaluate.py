"""The rules stage: each enabled rule's condition, evaluated on its pack's timeline.

A compiled rule's ``when:`` is a polars expression over the timeline's columns (detector outputs,
readings, scores and patient context by name); this stage evaluates every rule of a pack in one
``select`` — polars runs them in parallel — and returns one Boolean column per rule id, null
where the condition is unknown. What a condition's runs become (``for:``, cooldown, resolution)
is the episodes stage's (:mod:`engine.episodes`).
"""
from __future__ import annotations

import polars as pl


def resolve_column(rule_id: str) -> str:
    """The column of a rule's ``resolve_when`` condition in :func:`conditions`' result."""
    return f"__resolve:{rule_id}"


def conditions(timeline, pack, *, lazy: bool = False) -> pl.DataFrame | pl.LazyFrame:
    """One Boolean column per enabled rule of ``pack`` (named by rule id), aligned to
    ``timeline`` (:class:`engine.timeline.Timeline`); null where unknown. A rule with a
    ``resolve_when`` adds that condition as column :func:`resolve_column`.

    ``lazy=True`` returns the query instead of its result, so that the episodes stage's own
    step over the conditions (:func:`engine.episodes.open_episodes`) runs in the same pass.
    """
    rules = [r for r in pack.rules if r.enabled]
    frame = timeline.values.lazy() if lazy else timeline.values
    if not rules:
        return frame.select([]) if lazy else pl.DataFrame(height=timeline.height)
    return frame.select([r.expr.alias(r.id) for r in rules]
                        + [r.resolve_expr.alias(resolve_column(r.id)) for r in rules
                           if r.resolve_expr is not None])
