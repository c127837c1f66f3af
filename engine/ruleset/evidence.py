"""Evidence and reasons: what made a rule fire, as data and as one sentence for a nurse.

A ``reason:`` template is text with ``{name}`` placeholders (``{{`` and ``}}`` for literal
braces). It is parsed here, not given to ``str.format``: a placeholder is a bare name the pack
knows, with no attribute, index or format spec, so a template can only ever print the values of
the evidence. Values are written as the reason's language writes them (:func:`format_value`):
English ``2.5 kg``, ``92%``, ``1h30m``; French ``2,5 kg``, ``92 %``, ``1 h 30 min``, with
non-breaking spaces (:mod:`engine.ruleset.i18n` picks the language).
"""
from __future__ import annotations

import functools
import json
import math
import re

from ..durations import format_duration
from .lang.parser import ExprProblem

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TIME_UNITS_US = {"s": 1e6, "min": 6e7, "m": 6e7, "h": 3.6e9, "d": 8.64e10, "w": 6.048e11}


def parse_template(text: str) -> tuple[list[tuple[str, str | None]], list[ExprProblem]]:
    """Split a template into ``(literal, name)`` parts; problems carry character offsets."""
    parts, problems = _parse_template(text)
    return list(parts), list(problems)


@functools.lru_cache(maxsize=4096)
def _parse_template(text: str) -> tuple[tuple, tuple]:
    """:func:`parse_template`, once per distinct text (a rule's reason is rendered for every
    chunk of every run)."""
    parts: list[tuple[str, str | None]] = []
    problems: list[ExprProblem] = []
    buf, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "{" and text[i + 1:i + 2] == "{":
            buf.append("{")
            i += 2
        elif ch == "}" and text[i + 1:i + 2] == "}":
            buf.append("}")
            i += 2
        elif ch == "{":
            end = text.find("}", i + 1)
            inner = text[i + 1:end] if end >= 0 else text[i + 1:]
            if end < 0:
                problems.append(ExprProblem(i, "a '{' in the reason is never closed.",
                                            "Write {name} for a value, or {{ for a brace."))
                break
            if not _NAME.fullmatch(inner.strip()):
                problems.append(ExprProblem(i, f"'{{{inner}}}' in the reason is not a "
                                            "placeholder.", "A placeholder is a bare name like "
                                            "{weight_gain_3d}: no format spec, attribute or "
                                            "index. Write {{ for a brace."))
            else:
                parts.append(("".join(buf), inner.strip()))
                buf = []
            i = end + 1
        elif ch == "}":
            problems.append(ExprProblem(i, "a '}' in the reason has no opening '{'.",
                                        "Write }} for a literal brace."))
            i += 1
        else:
            buf.append(ch)
            i += 1
    parts.append(("".join(buf), None))
    return tuple(parts), tuple(problems)


def format_value(value, unit: str, lang: str = "en") -> str:
    """'2.5 kg', '92%', '1d12h' (a duration), 'yes', 'unknown' (null); in French (``lang="fr"``)
    '2,5 kg', '92 %', '1 j 12 h', 'oui', 'inconnu' (:func:`french_value`)."""
    if lang == "fr":
        return french_value(value, unit)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    v = float(value)
    if _is_duration(v, unit):
        return _duration_text(v, unit)
    text = _number_text(v)
    return f"{text} {unit}".rstrip() if unit and unit != "%" else f"{text}{unit}" if unit else text


def _is_duration(v: float, unit: str) -> bool:
    """A value written as a duration: a time unit, and non-negative and within what a
    64-bit microsecond count holds (a larger one is printed as a number of its unit)."""
    return (unit in _TIME_UNITS_US and math.isfinite(v) and v >= 0
            and v * _TIME_UNITS_US[unit] < 2**63)


def _duration_text(v: float, unit: str) -> str:
    """A non-negative time in ``unit`` as the duration grammar writes it: '16.2 s' under a
    minute, else to the minute ('1h30m', '2d12h'; whole weeks as '2w', else days: '30d')."""
    us = v * _TIME_UNITS_US[unit]
    if us < 60_000_000:  # under a minute (a chair-rise test): seconds, to 0.1 s
        return f"{us / 1e6:.1f}".rstrip("0").rstrip(".") + " s"
    return _minutes_text(int(round(us / 6e7)))      # to the minute


@functools.lru_cache(maxsize=4096)
def _minutes_text(minutes: int) -> str:
    """A whole number of minutes as :func:`_duration_text` writes it. Cached: the silences and
    durations of a run's episodes, rounded to the minute, repeat."""
    text = format_duration(minutes * 60_000_000)
    # whole weeks read as weeks ("2w"), anything else in days: "30d", not "4w2d"
    weeks = re.fullmatch(r"(\d+)w(?:(\d+)d)?(.*)", text)
    if weeks and (weeks.group(2) or weeks.group(3)):
        days = int(weeks.group(1)) * 7 + int(weeks.group(2) or 0)
        text = f"{days}d{weeks.group(3)}"
    return text


def _number_text(v: float) -> str:
    """A number with at most three decimals, no trailing zeros ('2.5', '81.2', '-5.019')."""
    if not math.isfinite(v):
        return str(v)
    if abs(v) >= 1e15:              # not a clinical figure: six significant digits
        return f"{v:.6g}"
    if v == int(v):
        return str(int(v))
    # three decimals: a value just under a threshold (69.995 %) must not print as the
    # threshold itself
    text = f"{v:.3f}".rstrip("0").rstrip(".")
    if text in ("0", "-0"):
        text = f"{v:.3g}"
    return text


#: French typography: a non-breaking space between a number and its unit (also before %), so
#: that a phone never wraps '92' and '%' apart
NBSP = "\u00a0"
#: the French symbols of the time units the engine prints (the others are the same: kg, %, °C,
#: mmHg, mg/dL, /min, h, s ...)
_FR_UNITS = {"d": "j", "w": "sem", "m": "min", "degC": "°C"}
_FR_DURATION = {"w": "sem", "d": "j", "h": "h", "m": "min", "s": "s"}


@functools.lru_cache(maxsize=1024)
def french_unit(label: str) -> str:
    """A unit label as French writes it: '/d' -> '/j', 'kg/w' -> 'kg/sem', 'kg' unchanged.

    Cached: a run prints thousands of values in a handful of units."""
    return re.sub(r"[A-Za-z]+", lambda m: _FR_UNITS.get(m.group(), m.group()), label)


def french_value(value, unit: str) -> str:
    """:func:`format_value` in French: a decimal comma ('2,5 kg', '-10,04 %', '37,8 °C'), a
    non-breaking space (:data:`NBSP`) before every unit, '%' included, and between the parts
    of a duration ('1 h 30 min', '2 j 12 h', '2 sem', '16,2 s'), 'oui'/'non', 'inconnu' for
    a null. The digits are those of the English text: only the separators differ."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "inconnu"
    if isinstance(value, bool):
        return "oui" if value else "non"
    if isinstance(value, str):
        return value
    v = float(value)
    if _is_duration(v, unit):
        return _french_duration(_duration_text(v, unit))
    text = _number_text(v).replace(".", ",")
    return f"{text}{NBSP}{french_unit(unit)}" if unit else text


@functools.lru_cache(maxsize=4096)
def _french_duration(text: str) -> str:
    """A duration as :func:`_duration_text` writes it, in French ('1h30m' -> '1 h 30 min',
    '16.2 s' -> '16,2 s'). Cached, as :func:`_minutes_text` is."""
    if text.endswith(" s"):
        return text[:-2].replace(".", ",") + NBSP + "s"
    return NBSP.join(f"{n}{NBSP}{_FR_DURATION[u]}"
                     for n, u in re.findall(r"(\d+)([wdhms])", text))


def evidence_json(values: dict[str, tuple[object, str]]) -> str:
    """``{"name": {"value": v, "unit": "kg"}, ...}`` as compact JSON (NaN as null)."""
    out = {}
    for name, (value, unit) in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[name] = {"value": value, "unit": unit}
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def labels_json(labels: dict[str, str]) -> str:
    """A rule's labels as compact JSON with sorted keys (``{}`` when none)."""
    return json.dumps(dict(sorted(labels.items())), ensure_ascii=False, separators=(",", ":"))


def render_reason(parts, values: dict[str, tuple[object, str]], lang: str = "en") -> str:
    """Fill a parsed template with evidence values formatted as ``lang`` writes them."""
    out = []
    for literal, name in parts:
        out.append(literal)
        if name is not None:
            value, unit = values.get(name, (None, ""))
            out.append(format_value(value, unit, lang))
    return "".join(out)


def _colon(lang: str) -> str:
    """': ' — in French with a non-breaking space before the colon."""
    return NBSP + ": " if lang == "fr" else ": "


def default_reason(title: str, values: dict[str, tuple[object, str]],
                   params: set[str], lang: str = "en") -> str:
    """'Weight gain over 2 kg in 3 days: weight_gain_3d 2.5 kg (gain_3d 2 kg).'"""
    measured = [f"{n} {format_value(v, u, lang)}" for n, (v, u) in values.items()
                if n not in params]
    limits = [f"{n} {format_value(v, u, lang)}" for n, (v, u) in values.items() if n in params]
    text = title.rstrip(".")
    if measured:
        text += _colon(lang) + ", ".join(measured)
    if limits:
        text += f" ({', '.join(limits)})"
    return text + "."


def _json_value(value) -> str:
    """One evidence value as :func:`evidence_json` writes it (NaN and infinities: null)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "null"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _each(fn, values: list) -> list[str]:
    """``fn`` of each value, computed once per distinct value (scores, limits and flags repeat
    across episodes). Values that compare equal but print differently (``True`` and ``1``,
    ``-0.0`` and ``0.0``) never share a text."""
    distinct = dict.fromkeys(values)
    kinds = set(map(type, values))      # of every value: False and 0 share a dict key
    kinds.discard(type(None))
    if len(kinds) > 1 or any(type(v) is float and v == 0 for v in distinct):
        memo: dict = {}
        out = []
        for v in values:
            key = (type(v), v) if not (v == 0 and type(v) is float) else (float, str(v))
            text = memo.get(key)
            if text is None:
                text = memo[key] = fn(v)
            out.append(text)
        return out
    for v in distinct:
        distinct[v] = fn(v)
    return list(map(distinct.__getitem__, values))


def evidence_column(columns: dict[str, tuple[list, str]]) -> list[str]:
    """:func:`evidence_json` of many episodes at once: ``columns`` maps a name to (its value in
    each episode, its unit); returns one JSON text per episode, the same text."""
    k = len(next(iter(columns.values()))[0]) if columns else 0
    if not columns:
        return ["{}"] * k
    # each name's texts built column by column (a list comprehension per name), then joined
    # once per episode: appending column after column copied each episode's text once per name
    parts = []
    for name, (values, unit) in columns.items():
        head = json.dumps(name, ensure_ascii=False) + ':{"value":'
        tail = ',"unit":' + json.dumps(unit, ensure_ascii=False) + "}"
        parts.append([head + t + tail for t in _each(_json_value, values)])
    return ["{" + ",".join(row) + "}" for row in zip(*parts)]


def reason_column(parts, title: str, columns: dict[str, tuple[list, str]],
                  params: set[str], lang: str = "en") -> list[str]:
    """:func:`render_reason` (or :func:`default_reason` without a template) of many episodes at
    once, from the same ``columns`` as :func:`evidence_column`, values formatted as ``lang``
    writes them."""
    k = len(next(iter(columns.values()))[0]) if columns else 0

    def texts(name):
        values, unit = columns.get(name, ([None] * k, ""))
        return _each(lambda v: format_value(v, unit, lang), values)

    if parts is None:
        measured = [(f"{n} ", texts(n)) for n in columns if n not in params]
        limits = [(f"{n} ", texts(n)) for n in columns if n in params]
        head = title.rstrip(".")
        out = []
        for i in range(k):
            text = head
            if measured:
                text += _colon(lang) + ", ".join(label + t[i] for label, t in measured)
            if limits:
                text += " (" + ", ".join(label + t[i] for label, t in limits) + ")"
            out.append(text + ".")
        return out
    # the template's pieces column by column (a literal is the same in every episode), then
    # joined once per episode
    pieces = [[literal] * k if name is None else [literal + t for t in texts(name)]
              for literal, name in parts]
    return ["".join(row) for row in zip(*pieces)] if pieces else [""] * k
