"""The languages of what a nurse reads: a rule's title and reason, in French or English.

A rule's ``title:`` and ``reason:`` are a text (taken as English) or a mapping
``{fr: "…", en: "…"}`` (rules/README.md, "Languages"). The language of a run is chosen once, by
whoever runs the engine (``veille score --lang``, ``Engine.from_paths(lang=…)``, a pack test's
``lang:``), and reaches the episodes stage, where titles are picked and reasons rendered
(:func:`engine.episodes.open_episodes`). A rule without a text in that language falls back to
the other language, and its reason is then formatted as that language writes numbers: a
sentence is never half French, half English.
"""
from __future__ import annotations

from ..errors import InputError

#: the languages a title or reason may be written in, in the order a missing one falls back
LANGS = ("fr", "en")
#: the language of alerts when none is chosen: the nurses who read them are French
DEFAULT_LANG = "fr"
#: the language of a plain text (``reason: "…"``) and of the packs' own tests
SOURCE_LANG = "en"
NAMES = {"fr": "French", "en": "English"}


def check_lang(lang: object) -> str:
    """``lang`` if it is a known language; an InputError that lists them otherwise."""
    if lang not in LANGS:
        raise InputError(f"unknown language {lang!r}: alerts are written in "
                         + " or ".join(f"'{x}' ({NAMES[x]})" for x in LANGS) + ".")
    return lang  # type: ignore[return-value]


def pick(texts: dict[str, str], lang: str) -> tuple[str, str]:
    """The text of ``texts`` (language -> text, not empty) in ``lang``, else in the first
    language of :data:`LANGS` it has; returns ``(text, its language)``."""
    if lang in texts:
        return texts[lang], lang
    other = next(x for x in LANGS if x in texts)
    return texts[other], other
