"""One style for every rule-file mistake: ``file:line:col: rule 'id': what is wrong. The fix.``

A :class:`Diagnostic` is one mistake, with its place; a :class:`Diagnostics` collects all the
mistakes of a file so that a clinician sees them at once (as promtool does), and
:meth:`Diagnostics.raise_if_any` turns them into one :class:`engine.errors.RuleError` — a pack
with any error is never partly loaded.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from ...errors import RuleError


@dataclass(frozen=True)
class Diagnostic:
    """One mistake in a rule file.

    Attributes
    ----------
    path : str
        The file as given by the user (``rules/heart_failure.yaml``), or ``<expr>``.
    line, col : int
        1-based position of the offending text; 0 when unknown (a whole-file problem).
    rule_id : str or None
        The rule the mistake is in, when it is inside one.
    message : str
        What is wrong, naming the thing (key, name, unit) and what was expected.
    hint : str
        The fix: 'Did you mean ...?', the expected unit, an example. May be empty.
    """

    path: str
    line: int
    col: int
    rule_id: str | None
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = self.path
        if self.line:
            where += f":{self.line}:{self.col}"
        text = f"{where}: "
        if self.rule_id:
            text += f"rule '{self.rule_id}': "
        text += self.message
        if self.hint:
            text += " " + self.hint
        return text


@dataclass
class Diagnostics:
    """The mistakes found so far in one or more files, in the order found."""

    items: list[Diagnostic] = field(default_factory=list)

    def add(self, path: str, line: int, col: int, message: str, hint: str = "",
            rule_id: str | None = None) -> None:
        self.items.append(Diagnostic(str(path), line, col, rule_id, message, hint))

    def extend(self, other: "Diagnostics | list[Diagnostic]") -> None:
        self.items.extend(other.items if isinstance(other, Diagnostics) else other)

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def raise_if_any(self, what: str = "the rule files") -> None:
        """Raise one RuleError carrying every diagnostic, sorted by file and position."""
        if not self.items:
            return
        items = sorted(dict.fromkeys(self.items),
                       key=lambda d: (d.path, d.line, d.col))
        n = len(items)
        head = (f"{n} error{'s' if n > 1 else ''} in {what}; nothing was loaded from a file with "
                f"an error:")
        raise RuleError("\n".join([head, *(str(d) for d in items)]), errors=items)


def shown(value, limit: int = 60) -> str:
    """``value`` as a message quotes it: its repr, at most ``limit`` characters — a huge value
    must not make a huge message."""
    return clip(repr(value), limit)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (``...`` marks the cut)."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def did_you_mean(name: str, known, *, noun: str = "names", n: int = 3,
                 list_known: bool = True, max_list: int = 12) -> str:
    """'Did you mean 'x'? Known names: a, b, c.' — the closest known names first."""
    known = sorted(set(known))
    close = difflib.get_close_matches(name, known, n=n, cutoff=0.6)
    if not close:
        # a prefix or substring often names the intent better than edit distance
        close = [k for k in known if name and (k.startswith(name) or name in k)][:n]
    parts = []
    if close:
        parts.append("Did you mean " + " or ".join(f"'{c}'" for c in close) + "?")
    if list_known and known:
        shown = ", ".join(known[:max_list]) + (", ..." if len(known) > max_list else "")
        parts.append(f"Known {noun}: {shown}.")
    return " ".join(parts)
