"""The detector registry: every detector a spec can name, with its kernel and parameters.

A detector is declared once, by a :func:`register` call beside its kernel wrapper, as data: the
``fn`` name used in rule files, the numba kernel, the parameters it takes (in the kernel's
positional order after ``offsets``), how much history it needs (``lookback``), the unit of its
output and its docstring. Spec validation (:mod:`engine.detectors.spec`), evaluation
(:mod:`engine.detectors.evaluate`) and the documentation all read this one table.

Kernel contract (every detector): ``kernel(ts, x, offsets, *params) -> out`` where ``ts`` is
int64[n] microseconds since the epoch, sorted ascending within each series (ties allowed), ``x``
float64[n] with NaN for a null reading, ``offsets`` int64[s+1] (series ``k`` is rows
``offsets[k]:offsets[k+1]``), and ``out`` float64[n] aligned to the rows, NaN where undefined.
Duration parameters reach the kernel as int64 µs, FLOAT as float64, INT as int64.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

DURATION, FLOAT, INT = "duration", "float", "int"
KINDS = (DURATION, FLOAT, INT)
#: lookback of detectors that read the previous reading however old it is (since_last, silence):
#: "all of the series' history", about 146 000 years in µs, so ``max()`` over specs still works
#: and ``ts - lookback`` cannot overflow int64
ALL_HISTORY = 2**62
#: units an output can be in (the rule engine and reports read these)
OUTPUTS = ("value", "value_per_hour", "percent", "minutes", "count", "dimensionless", "flag")


def frozen(a, dtype) -> np.ndarray:
    """``a`` as a C-contiguous, read-only array of ``dtype`` (a view when it already is one).

    Every array a kernel reads is handed over in this form: numba compiles (and caches) one
    specialisation per array type, so keeping a single type means :func:`engine.detectors.warmup`
    compiles exactly what evaluation will run.
    """
    a = np.ascontiguousarray(a, dtype=dtype)
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


@dataclass(frozen=True)
class Param:
    """One parameter of a detector, as written in a spec (``window: 3d``).

    Attributes
    ----------
    name : str
        The key in the spec.
    kind : {"duration", "float", "int"}
        How the spec value is parsed; durations reach the kernel as int64 microseconds.
    required : bool
        When False, ``default`` (written in spec form, e.g. ``"0m"`` or ``2.0``) is used.
    doc : str
        One line for error messages and generated documentation.
    """

    name: str
    kind: str
    required: bool = True
    default: object = None
    doc: str = ""


@dataclass(frozen=True)
class DetectorDef:
    """A registered detector (see the module docstring for the kernel contract)."""

    fn: str
    kernel: Callable
    params: tuple[Param, ...]
    lookback: Callable[[dict], int]
    output: str
    doc: str


#: fn name -> detector; filled by the ``register`` calls in the detector modules
REGISTRY: dict[str, DetectorDef] = {}


def register(fn: str, *, kernel: Callable, params=(), lookback: Callable[[dict], int],
             output: str, doc: str) -> DetectorDef:
    """Add a detector to :data:`REGISTRY` and return its definition.

    Parameters
    ----------
    fn : str
        Name used in specs (``{fn: delta}``); lower-case identifier, unique.
    kernel : numba dispatcher
        ``kernel(ts, x, offsets, *params) -> out`` (module docstring).
    params : sequence of Param
        In the kernel's positional order after ``offsets``.
    lookback : callable
        ``lookback(params) -> int``: microseconds of history needed before a row for its output
        to be exact, given the parsed parameters (durations in µs).
    output : str
        Unit of the output, one of :data:`OUTPUTS`.
    doc : str
        The detector's documentation: maths, semantics (window ends, nulls, ties), false-alarm
        guidance, reference.

    Raises
    ------
    ValueError
        On a programming error in the declaration (duplicate name, unknown kind or output).
        This is veille's own code being wrong, not user input, hence not a VeilleError.
    """
    if not fn.isidentifier() or fn != fn.lower():
        raise ValueError(f"detector name {fn!r} must be a lower-case identifier")
    if fn in REGISTRY:
        raise ValueError(f"detector {fn!r} is registered twice")
    params = tuple(params)
    for p in params:
        if p.kind not in KINDS:
            raise ValueError(f"detector {fn!r}: param {p.name!r} has unknown kind {p.kind!r}")
        if p.name in ("metric", "fn", "staleness"):
            raise ValueError(f"detector {fn!r}: param name {p.name!r} is reserved for specs")
    if output not in OUTPUTS:
        raise ValueError(f"detector {fn!r}: output {output!r} not one of {OUTPUTS}")
    d = DetectorDef(fn=fn, kernel=kernel, params=params, lookback=lookback, output=output,
                    doc=doc)
    REGISTRY[fn] = d
    return d
