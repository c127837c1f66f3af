"""Rule files as YAML with positions: reading, locating any value, and schema errors.

ruamel.yaml keeps the line and column of every key and value; :class:`Source` answers "where is
``rules[3].when``" and "where is character 12 of that expression", so every message can say
``file:line:col``. :func:`schema_diagnostics` turns pydantic's collected errors into messages in
the house style, at the position of the offending key or value.
"""
from __future__ import annotations

import types
import typing
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent

from .diagnostics import Diagnostics, clip, did_you_mean, shown

Path_ = tuple  # a path into the YAML tree: keys (str) and list indices (int)


class Source:
    """One YAML file: its text, its tree with positions, and its plain-Python data."""

    def __init__(self, label: str, text: str, tree: Any):
        self.label = label
        self.text = text
        self.lines = text.splitlines()
        self.tree = tree
        self.data = plain(tree)

    # -- positions (returned 1-based) --------------------------------------------------------
    def _walk(self, path: Path_):
        node = self.tree
        pos = (getattr(getattr(node, "lc", None), "line", 0) or 0,
               getattr(getattr(node, "lc", None), "col", 0) or 0)
        key_pos = pos
        for el in path:
            if isinstance(node, CommentedMap) and not isinstance(el, int) and el in node:
                key_pos, pos = node.lc.key(el), node.lc.value(el)
                node = node[el]
            elif isinstance(node, CommentedSeq) and isinstance(el, int) and 0 <= el < len(node):
                key_pos = pos = node.lc.item(el)
                node = node[el]
            else:
                break
        return node, pos, key_pos

    def pos(self, path: Path_) -> tuple[int, int]:
        """Position of the value at ``path`` (or of its deepest existing ancestor)."""
        _, (line, col), _ = self._walk(path)
        return line + 1, col + 1

    def key_pos(self, path: Path_) -> tuple[int, int]:
        """Position of the key of the last element of ``path`` (the item, for a list)."""
        _, _, (line, col) = self._walk(path)
        return line + 1, col + 1

    def exists(self, path: Path_) -> bool:
        node = self.tree
        for el in path:
            if isinstance(node, dict) and not isinstance(el, int) and el in node:
                node = node[el]
            elif isinstance(node, list) and isinstance(el, int) and 0 <= el < len(node):
                node = node[el]
            else:
                return False
        return True

    def text_pos(self, path: Path_, offset: int) -> tuple[int, int]:
        """Position of character ``offset`` of the text scalar at ``path``.

        Plain, quoted, literal (``|``) and folded (``>``) scalars are all handled by walking the
        source alongside the value: a run of spaces or line breaks in one matches a run in the
        other, since YAML folds lines and strips indentation.
        """
        node, (line, col), _ = self._walk(path)
        value = node if isinstance(node, str) else ""
        if not (0 <= line < len(self.lines)):
            return line + 1, col + 1
        l, c = line, col
        first = self.lines[l][c:c + 1]
        if first in ("|", ">"):
            l, c = l + 1, 0
            while l < len(self.lines) and not self.lines[l].strip():
                l += 1
        elif first in ("'", '"'):
            c += 1

        def ch():
            return self.lines[l][c] if l < len(self.lines) and c < len(self.lines[l]) else "\n"

        def step():
            nonlocal l, c
            if l < len(self.lines) and c < len(self.lines[l]):
                c += 1
            else:                      # past the end of a line: on to the next one
                l, c = l + 1, 0

        def skip_space():
            while l < len(self.lines) and ch().isspace():
                step()

        skip_space()
        i = 0
        offset = min(offset, len(value))
        while i < offset:
            if value[i].isspace():
                while i < offset and value[i].isspace():
                    i += 1
                skip_space()
            else:
                i += 1
                step()
                if i < offset and not value[i].isspace() and ch().isspace():
                    skip_space()   # a line break folded into nothing (rare): keep in step
        return l + 1, c + 1


def plain(node: Any) -> Any:
    """ruamel's tree as builtin types (dict, list, str, int, float, bool, datetime, None)."""
    if isinstance(node, dict):
        return {plain(k) if not isinstance(k, (dict, list)) else str(k): plain(v)
                for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, datetime):
        dt = datetime(node.year, node.month, node.day, node.hour, node.minute, node.second,
                      node.microsecond, tzinfo=node.tzinfo)
        return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    if isinstance(node, date):
        return datetime(node.year, node.month, node.day, tzinfo=timezone.utc)
    return node


#: a rule or site file larger than this is refused unread (the largest shipped pack is 20 kB)
MAX_BYTES = 1 << 20
#: deepest nesting of mappings and lists (a pack needs 6)
MAX_DEPTH = 40
#: most YAML nodes in one file (the largest shipped pack has about 3,000)
MAX_NODES = 100_000


class Refused(YAMLError):
    """A construct rule files may not use, found while composing (with its position)."""

    def __init__(self, mark, message: str, hint: str):
        super().__init__(message)
        self.mark, self.message, self.hint = mark, message, hint


class _Composer(Composer):
    """ruamel's composer, refusing what could make a small file expensive or ambiguous: more
    than :data:`MAX_NODES` nodes *once aliases are expanded* (an alias bomb — 10 levels of 10
    aliases — expands into 10^10 nodes; it is refused at the alias that crosses the limit,
    before anything is expanded), and explicit tags."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        tag = getattr(event, "tag", None)
        if tag is not None:
            shown_tag = str(tag).replace("tag:yaml.org,2002:", "!!")
            raise Refused(event.start_mark, f"YAML tags ({shown_tag}) are not allowed in rule "
                          "files.", "Remove the tag; quote a value to make it text.")
        if not hasattr(self, "_expanded"):
            self._expanded, self._sizes = 0, {}
        if isinstance(event, AliasEvent):
            node = super().compose_node(parent, index)
            self._grow(self._sizes.get(id(node), 1), event)
            return node
        before = self._expanded
        node = super().compose_node(parent, index)
        self._grow(1, event)
        if getattr(event, "anchor", None) is not None:
            self._sizes[id(node)] = self._expanded - before
        return node

    def _grow(self, n: int, event) -> None:
        self._expanded += n
        if self._expanded > MAX_NODES:
            raise Refused(event.start_mark, f"the file expands to more than {MAX_NODES:,} YAML "
                          "nodes (its aliases, *name, repeat whole anchored parts).",
                          "A rule pack is far smaller: write values out, or check how the file "
                          "was made.")


def _line_col(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of character ``index`` of ``text``."""
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _too_deep_flow(text: str) -> int | None:
    """Index of the first ``[`` or ``{`` nested deeper than :data:`MAX_DEPTH` outside quotes
    and comments, or None: caught before the YAML scanner, which would take seconds on tens of
    thousands of brackets."""
    depth, i, n = 0, 0, len(text)
    quote = None
    while i < n:
        ch = text[i]
        if quote:
            if ch == quote:
                if quote == "'" and text.startswith("''", i):
                    i += 1
                else:
                    quote = None
            elif ch == "\\" and quote == '"':
                i += 1
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] in " \t\n"):
            nl = text.find("\n", i)
            i = n if nl < 0 else nl
            continue
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return i
        elif ch in "]}":
            depth = max(0, depth - 1)
        i += 1
    return None


def _decode(raw: bytes, label: str, diags: Diagnostics) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        col = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        diags.add(label, line, col, f"the byte 0x{raw[err.start]:02x} is not UTF-8 text.",
                  "Save the file as UTF-8 (a Latin-1 'é' is one byte; in UTF-8 it is two).")
        return None


def read_source(path: str | Path, diags: Diagnostics, *, label: str | None = None,
                text: str | None = None) -> Source | None:
    """Read and parse one YAML file; on failure add a located diagnostic and return None.

    Refused before anything is expanded: files over :data:`MAX_BYTES`, bytes that are not
    UTF-8, control characters, tags, nesting deeper than :data:`MAX_DEPTH`, more than
    :data:`MAX_NODES` nodes once aliases are expanded.
    """
    label = label or str(path)
    if text is None:
        try:
            p = Path(path)
            size = p.stat().st_size
            if size > MAX_BYTES:
                diags.add(label, 0, 0, f"the file has {size:,} bytes; a rule file may have at "
                          f"most {MAX_BYTES:,}.")
                return None
            raw = p.read_bytes()
        except FileNotFoundError:
            diags.add(label, 0, 0, "file not found.")
            return None
        except OSError as err:
            diags.add(label, 0, 0, f"cannot read the file ({err.__class__.__name__}: "
                      f"{err.strerror or err}).")
            return None
        text = _decode(raw, label, diags)
        if text is None:
            return None
    elif len(text) > MAX_BYTES:
        diags.add(label, 0, 0, f"the text has {len(text):,} characters; a rule file may have "
                  f"at most {MAX_BYTES:,}.")
        return None
    bad = next((i for i, ch in enumerate(text) if ch < " " and ch not in "\t\n\r"), None)
    if bad is not None:
        line, col = _line_col(text, bad)
        diags.add(label, line, col, f"control character U+{ord(text[bad]):04X} in the file.",
                  "Rule files are plain text: remove it.")
        return None
    deep = _too_deep_flow(text)
    if deep is not None:
        line, col = _line_col(text, deep)
        diags.add(label, line, col, f"YAML syntax error: nesting deeper than {MAX_DEPTH} levels.",
                  "A rule pack nests a few levels; check how the file was made.")
        return None
    yaml = YAML(typ="rt")
    yaml.Composer = _Composer
    yaml.max_depth = MAX_DEPTH
    try:
        tree = yaml.load(text)
    except Refused as err:
        diags.add(label, err.mark.line + 1, err.mark.column + 1, err.message, err.hint)
        return None
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        what = " ".join(x for x in (err.context, err.problem) if x)
        hint = "YAML needs consistent indentation with spaces, and quotes around text " \
               "containing ': ' or starting with a special character."
        if "duplicate key" in str(err):
            what = str(err.problem).split(" with value")[0].replace("found ", "")
            hint = "Each key may appear once in a mapping."
        elif "maximum depth" in str(err):
            what = f"nesting deeper than {MAX_DEPTH} levels"
            hint = "A rule pack nests a few levels; check how the file was made."
        diags.add(label, line, col, f"YAML syntax error: {clip(what, 200)}.", hint)
        return None
    except (YAMLError, RecursionError, ValueError, TypeError) as err:
        position = getattr(err, "position", None)
        line, col = _line_col(text, position) if isinstance(position, int) else (0, 0)
        diags.add(label, line, col, f"YAML syntax error: {clip(str(err), 200)}.")
        return None
    if not isinstance(tree, CommentedMap):
        diags.add(label, 1, 1, f"a rule file must be a YAML mapping (keys like 'pack:' and "
                  f"'rules:'); found {type(plain(tree)).__name__}.")
        return None
    return Source(label, text, tree)


# ------------------------------------------------------------------------------------------
# pydantic errors -> diagnostics
# ------------------------------------------------------------------------------------------
def _unwrap(tp):
    """Strip Optional / Annotated; returns the annotation to walk into."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _step(tp, el, data_here):
    """The annotation one level down from ``tp`` along loc element ``el``."""
    tp = _unwrap(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, f in tp.model_fields.items():
            if (f.alias or name) == el:
                return f.annotation, f
        return None, None
    if origin is list and isinstance(el, int):
        return args[0], None
    if origin is dict:
        return args[1], None
    if origin in (typing.Union, types.UnionType):
        # pick the member that matches the data's shape (a mapping -> the model member)
        for a in args:
            ua = _unwrap(a)
            if isinstance(data_here, dict) and isinstance(ua, type) and issubclass(ua, BaseModel):
                return _step(ua, el, data_here)
            if isinstance(data_here, list) and typing.get_origin(ua) is list:
                return _step(ua, el, data_here)
    return None, None


def _model_at(model, path, data):
    """(field info, model class holding it) for a data path, walking annotations."""
    tp, field, holder = model, None, None
    node = data
    for el in path:
        u = _unwrap(tp)
        if isinstance(u, type) and issubclass(u, BaseModel):
            holder = u
        elif typing.get_origin(u) in (typing.Union, types.UnionType) and isinstance(node, dict):
            holder = next((a for a in map(_unwrap, typing.get_args(u))
                           if isinstance(a, type) and issubclass(a, BaseModel)), holder)
        tp, f = _step(tp, el, node)
        field = f if f is not None else (field if tp is not None else None)
        if f is None and typing.get_origin(_unwrap(u)) not in (list, dict):
            field = None
        node = node[el] if isinstance(node, (dict, list)) and _has(node, el) else None
        if tp is None:
            break
    return field, tp, holder


def _has(node, el) -> bool:
    if isinstance(node, dict):
        return el in node
    return isinstance(el, int) and 0 <= el < len(node)


def _data_path(loc, data) -> tuple:
    """pydantic's loc without union tags ('str', 'list[any]', 'ParamDecl'): only the elements
    that exist in the data are kept."""
    out, node = [], data
    for el in loc:
        if isinstance(node, (dict, list)) and _has(node, el):
            out.append(el)
            node = node[el]
    return tuple(out)


def dotted(path) -> str:
    text = ""
    for el in path:
        text += f"[{el}]" if isinstance(el, int) else (f".{el}" if text else str(el))
    return text


def schema_diagnostics(err: ValidationError, src: Source, model, diags: Diagnostics, *,
                       rule_id_of=None, base: tuple = ()) -> None:
    """Add one diagnostic per distinct schema problem of ``err`` (data validated at ``base``).

    ``rule_id_of(path)`` names the rule a path is inside, for the message prefix.
    """
    data = src.data
    for el in base:
        data = data[el]
    raw = err.errors(include_url=False)
    grouped: dict[tuple, list[dict]] = {}
    for e in raw:
        loc = tuple(e["loc"])
        if e["type"] in ("missing", "extra_forbidden"):
            path = _data_path(loc[:-1], data) + (loc[-1],)
        else:
            path = _data_path(loc, data)
        grouped.setdefault(path, []).append(e)
    # a union member that failed deep inside the data is the member the author meant: drop the
    # shallow "wrong type" errors of the other members at its ancestors
    deep = [p for p in grouped]
    for p in list(grouped):
        if any(q != p and q[:len(p)] == p for q in deep) and all(
                e["type"] not in ("missing", "extra_forbidden") for e in grouped[p]):
            del grouped[p]
    for path, errs in grouped.items():
        full = base + path
        rule_id = rule_id_of(full) if rule_id_of else None
        e = errs[0]
        kind = e["type"]
        if kind == "extra_forbidden":
            _, _, holder = _model_at(model, path[:-1] + ("__x__",), data)
            allowed = [f.alias or n for n, f in holder.model_fields.items()] if holder else []
            line, col = src.key_pos(full)
            diags.add(src.label, line, col, f"unknown key '{path[-1]}'"
                      + (f" in {dotted(full[:-1])}." if len(full) > 1 else "."),
                      did_you_mean(str(path[-1]), allowed, noun="keys", max_list=20),
                      rule_id=rule_id)
            continue
        field, _, _ = _model_at(model, path, data)
        phrase = field.description if field is not None and field.description else None
        if kind == "missing":
            line, col = src.pos(full[:-1])
            diags.add(src.label, line, col, f"missing the required key '{path[-1]}'"
                      + (f" in {dotted(full[:-1])}." if len(full) > 1 else "."),
                      f"It must be {phrase}." if phrase else "", rule_id=rule_id)
            continue
        line, col = src.pos(full)
        if kind == "string_pattern_mismatch" or kind == "too_short" or not phrase:
            detail = {"too_short": "must not be empty"}.get(kind, None)
            if phrase and kind != "too_short":
                detail = f"must be {phrase}"
            detail = detail or e["msg"][0].lower() + e["msg"][1:]
        else:
            detail = f"must be {phrase}"
        diags.add(src.label, line, col, f"'{dotted(full)}' {detail}. Got {shown(e['input'])} "
                  "instead.", rule_id=rule_id)
