"""Rule files as YAML with positions: reading, locating any value, and schema errors.

ruamel.yaml keeps the line and column of every key and value; :class:`Source` answers "where is
``rules[3].when``" and "where is character 12 of that expression", so every message can say
``file:line:col``. :func:`schema_diagnostics` turns pydantic's collected errors into messages in
the house style, at the position of the offending key or value.

ruamel.yaml's parser is pure Python: the bundled packs take it more than a second. So each
file that parses is cached — its data and positions, as JSON — in ``rules/`` beside the kernel
cache's ``numba/`` (:func:`engine.kernel_cache.cache_dir`: ``$VEILLE_CACHE_DIR``, else
``$XDG_CACHE_HOME/veille``, else ``~/.cache/veille``), named by the SHA-256 of its text (64 MB
and 2,000 files at most, the oldest deleted first), and a later process reads a text it has
seen without ruamel. Only a successful parse is cached: every error is found, and worded, by
ruamel as before. The folder is checked as the kernel cache's is (not the user's own, or
writable by others: the cache is not used) and each file is sealed: a damaged file, or one that
is not a cached parse of that text, is parsed again and rewritten. The seal detects damage, not
tampering: whoever can write the user's cache folder can plant another parse for a text (JSON
is only data, so no code runs). ``VEILLE_NO_RULE_CACHE=1`` turns the cache off.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import types
import typing
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml import __version__ as _ruamel_version
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent

from ...errors import InputError
from ...kernel_cache import cache_dir, check_folder, read_sealed, trim_folder, write_sealed
from .diagnostics import Diagnostics, clip, did_you_mean, shown

Path_ = tuple  # a path into the YAML tree: keys (str) and list indices (int)


class Source:
    """One YAML file: its text, its plain-Python data, and where each value is written.

    The positions are kept as a *shape* parallel to ``data`` (built once from ruamel's tree): a
    mapping is ``(pos, {key: (key_pos, value_pos, shape)})``, a list ``(pos, [(item_pos,
    shape), ...])``, a scalar None; each pos is a 0-based ``(line, col)``. Unlike the tree it
    is plain data, so a parse can be cached (:func:`read_source`) and read again without ruamel.
    """

    def __init__(self, label: str, text: str, tree: Any):
        # through the cached form, so that a file parsed by ruamel and one read from the cache
        # are located by the same code
        self._set(label, text, plain(tree), _shape(tree))

    @classmethod
    def from_form(cls, label: str, text: str, data: dict, shape: list) -> Source:
        """The Source of ``text`` from its cached form: ``data`` as :func:`plain` gives it,
        ``shape`` as :func:`_shape` gives it (ValueError or TypeError if they do not match)."""
        src = cls.__new__(cls)
        src._set(label, text, data, shape)
        return src

    def _set(self, label: str, text: str, data: Any, shape: Any) -> None:
        self.label = label
        self.text = text
        self.lines = text.splitlines()
        self.data = data
        self._shape = _positions(shape, data)

    # -- positions (returned 1-based) --------------------------------------------------------
    def _walk(self, path: Path_):
        node, shape = self.data, self._shape
        pos = key_pos = shape[0]
        for el in path:
            if isinstance(node, dict) and not isinstance(el, int) and el in node:
                key_pos, pos, shape = shape[1][el]
            elif isinstance(node, list) and isinstance(el, int) and 0 <= el < len(node):
                pos, shape = shape[1][el]
                key_pos = pos
            else:
                break
            node = node[el]
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
        node = self.data
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
        return {_key(k): plain(v) for k, v in node.items()}
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


def _key(k: Any) -> Any:
    """A mapping key of ruamel's tree as :func:`plain` gives it."""
    return plain(k) if not isinstance(k, (dict, list)) else str(k)


def _shape(node: Any) -> Any:
    """Where each value of ruamel's tree ``node`` is written, as JSON-ready lists: a mapping is
    ``[line, col, [[key_line, key_col, line, col, shape], ...]]`` in the order of its keys in
    :func:`plain`'s dict, a list ``[line, col, [[line, col, shape], ...]]``, a scalar None."""
    if isinstance(node, dict):
        # keyed as plain() keys its dict, so that the entries follow the data's keys one to one
        entries = {_key(k): [*_key_value_pos(node, k), _shape(v)] for k, v in node.items()}
        return [*_lc(node), list(entries.values())]
    if isinstance(node, list):
        return [*_lc(node), [[*node.lc.item(i), _shape(v)] for i, v in enumerate(node)]]
    return None


def _lc(node: Any) -> tuple[int, int]:
    lc = getattr(node, "lc", None)
    return getattr(lc, "line", 0) or 0, getattr(lc, "col", 0) or 0


def _key_value_pos(node: Any, k: Any) -> tuple[int, int, int, int]:
    """Positions of key ``k`` of mapping ``node`` and of its value. ruamel keeps none in
    ``node`` for a key merged in with ``<<: *anchor``: that key is located where it is written,
    in the anchored mapping (merged mappings are searched in order, as YAML merges them)."""
    if k in (node.lc.data or {}):
        return (*node.lc.key(k), *node.lc.value(k))
    for source in node.merge:
        if k in source:
            return _key_value_pos(source, k)
    return (*_lc(node), *_lc(node))       # not expected: the mapping itself, never an error


def _pos(line: Any, col: Any) -> tuple[int, int]:
    if type(line) is not int or type(col) is not int or line < 0 or col < 0:
        raise ValueError("a position is two non-negative integers")
    return line, col


def _positions(shape: Any, data: Any) -> Any:
    """:class:`Source`'s shape from :func:`_shape`'s lists, checked against ``data`` (a cache
    file that does not match raises ValueError or TypeError)."""
    if isinstance(data, dict):
        line, col, entries = shape
        if len(entries) != len(data):
            raise ValueError("the shape does not match the data")
        return _pos(line, col), {k: (_pos(kl, kc), _pos(vl, vc), _positions(sub, v))
                                 for (k, v), (kl, kc, vl, vc, sub) in zip(data.items(), entries)}
    if isinstance(data, list):
        line, col, items = shape
        if len(items) != len(data):
            raise ValueError("the shape does not match the data")
        return _pos(line, col), [(_pos(il, ic), _positions(sub, v))
                                 for v, (il, ic, sub) in zip(data, items)]
    if shape is not None:
        raise ValueError("the shape does not match the data")
    return None


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


#: the characters :func:`_too_deep_flow` acts on (every other one only moves it along)
_FLOW_TOKENS = re.compile(r"""['"#\\\[\]{}]""")
#: control characters a rule file may not hold (tab, line feed and carriage return it may)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _too_deep_flow(text: str) -> int | None:
    """Index of the first ``[`` or ``{`` nested deeper than :data:`MAX_DEPTH` outside quotes
    and comments, or None: caught before the YAML scanner, which would take seconds on tens of
    thousands of brackets. Visits only the characters that matter (quotes, backslashes,
    comment marks, brackets), each in the order a scan of every character would."""
    depth, quote = 0, None
    skip = 0                                   # characters before this index are skipped
    for m in _FLOW_TOKENS.finditer(text):
        i = m.start()
        if i < skip:
            continue
        ch = text[i]
        if quote:
            if ch == quote:
                if quote == "'" and text.startswith("''", i):
                    skip = i + 2
                else:
                    quote = None
            elif ch == "\\" and quote == '"':
                skip = i + 2
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            if i == 0 or text[i - 1] in " \t\n":
                nl = text.find("\n", i)
                if nl < 0:
                    return None
                skip = nl
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return i
        elif ch in "]}":
            depth = max(0, depth - 1)
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


# ------------------------------------------------------------------------------------------
# the parse cache
# ------------------------------------------------------------------------------------------
#: names the cached form: change it when that form or :func:`plain` changes, and files
#: written before are never read again
CACHE_FORMAT = "veille-rule-parse/2"
#: a parse whose cached form is larger is not cached (a pack's is about 1.5 times its text)
CACHE_MAX_BYTES = 4 * MAX_BYTES
#: the oldest files are deleted beyond this total, or this many files: every text that parses
#: is cached, and a fuzzer, a property test or a sweep loads thousands (the bundled packs' are
#: 12 files, about 350 kB)
CACHE_MAX_TOTAL = 64 << 20
CACHE_MAX_FILES = 2000


def _to_json(x: Any) -> Any:
    """:func:`plain`'s data as JSON that :func:`_from_json` turns back into equal values of the
    same types: None, bools, ints and text as themselves, anything else a tagged list (``["f",
    repr]``, ``["l", items]``, ``["d", [[key, value], ...]]``, ``["t", [iso, fold, zone
    name, offset in µs]]``), so that no JSON value means two things. ValueError for a value it
    cannot carry exactly (a complex key, a time zone other than a fixed offset)."""
    kind = type(x)
    if x is None or kind in (bool, int, str):
        return x
    if kind is float:
        return ["f", repr(x)]                 # exact, and nan and ±inf are not JSON
    if kind is list:
        return ["l", [_to_json(v) for v in x]]
    if kind is dict:
        return ["d", [[_to_json(k), _to_json(v)] for k, v in x.items()]]
    if kind is datetime and type(x.tzinfo) is timezone:
        # the ISO text carries the offset, not the name ruamel gives the zone ('Z', '+02:00'):
        # the zone's constructor arguments say whether it was given one
        # the offset in µs as well: fromisoformat (Python 3.11) drops a fraction of a second
        args = x.tzinfo.__getinitargs__()
        return ["t", [x.isoformat(), x.fold, args[1] if len(args) > 1 else None,
                      x.utcoffset() // timedelta(microseconds=1)]]
    raise ValueError(f"{kind.__name__} is not cached")


def _from_json(x: Any) -> Any:
    """The inverse of :func:`_to_json`; ValueError or TypeError on anything it does not write."""
    if x is None or type(x) in (bool, int, str):
        return x
    if type(x) is not list or len(x) != 2:
        raise ValueError("not a tagged value")
    tag, body = x
    if tag == "f" and type(body) is str:
        return float(body)
    if tag == "l" and type(body) is list:
        return [_from_json(v) for v in body]
    if tag == "d" and type(body) is list:
        out = {_from_json(k): _from_json(v) for k, v in body}
        if len(out) != len(body):
            raise ValueError("a key repeated")
        return out
    if tag == "t" and type(body) is list:
        iso, fold, name, offset = body
        dt = datetime.fromisoformat(iso)
        if type(dt.tzinfo) is not timezone or type(fold) is not int or type(offset) is not int:
            raise ValueError("not a time with its offset")
        offset = timedelta(microseconds=offset)
        zone = timezone(offset) if name is None else timezone(offset, name)
        return dt.replace(tzinfo=zone, fold=fold)
    raise ValueError(f"unknown tag {tag!r}")


def _cache_folder() -> Path | None:
    """``rules/`` beside the kernel cache's ``numba/``, checked as that is; None when the cache
    is turned off or the folder cannot be used — quietly: the kernel cache's check refuses
    such a folder, with the fix, and a rule file must load without a cache."""
    if os.environ.get("VEILLE_NO_RULE_CACHE", "") not in ("", "0"):
        return None
    try:
        return check_folder(Path(cache_dir()).parent / "rules")
    except (InputError, OSError):
        return None


def _cache_key(text: str) -> str:
    """The SHA-256 naming the parse of ``text`` by this format and this ruamel."""
    h = hashlib.sha256(f"{CACHE_FORMAT}\0{_ruamel_version}\0".encode())
    h.update(text.encode("utf-8", "surrogatepass"))   # any str (text= may hold a lone surrogate)
    return h.hexdigest()


def _cache_read(folder: Path, key: str, label: str, text: str) -> Source | None:
    """The Source cached under ``key``, or None: absent, unreadable, damaged (the seal does not
    match), or not the cached form of this text."""
    payload = read_sealed(folder / f"{key}.json", CACHE_MAX_BYTES)
    if payload is None:
        return None
    try:
        doc = json.loads(payload)
        if type(doc) is not dict or doc.get("key") != key:
            return None                       # a file of another text, renamed
        data = _from_json(doc["data"])
        if type(data) is not dict:
            return None
        return Source.from_form(label, text, data, doc["shape"])
    except (KeyError, ValueError, TypeError, RecursionError):
        return None                           # sealed yet not the cached form: parse again


def _cache_write(folder: Path, key: str, data: dict, shape: list) -> None:
    """Cache a parse under ``key``, owner-only and atomically (a reader sees the old file or
    the whole new one); quietly not when the folder refuses the write (a read-only or full
    disk: rules load all the same) or ``data`` holds a value :func:`_to_json` cannot carry."""
    try:
        payload = json.dumps({"key": key, "data": _to_json(data), "shape": shape},
                             ensure_ascii=False, separators=(",", ":")).encode()
    except ValueError:                        # not cached (_to_json), or an int over 4,300 digits
        return
    if len(payload) <= CACHE_MAX_BYTES and write_sealed(folder, f"{key}.json", payload):
        trim_folder(folder, CACHE_MAX_FILES, CACHE_MAX_TOTAL)


def read_source(path: str | Path, diags: Diagnostics, *, label: str | None = None,
                text: str | None = None) -> Source | None:
    """Read and parse one YAML file; on failure add a located diagnostic and return None.

    Refused before anything is expanded: files over :data:`MAX_BYTES`, bytes that are not
    UTF-8, control characters, tags, nesting deeper than :data:`MAX_DEPTH`, more than
    :data:`MAX_NODES` nodes once aliases are expanded. A text that passes the checks made
    before ruamel is looked up in the parse cache (module docstring) first.
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
    found = _CONTROL.search(text)
    bad = found.start() if found else None
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
    folder = _cache_folder()
    if folder is not None:
        key = _cache_key(text)
        src = _cache_read(folder, key, label, text)
        if src is not None:
            return src
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
    data, shape = plain(tree), _shape(tree)
    if folder is not None:
        _cache_write(folder, key, data, shape)
    return Source.from_form(label, text, data, shape)


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
