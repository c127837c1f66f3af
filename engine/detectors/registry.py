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

from dataclasses import dataclass, field
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
    elide : bool
        For an optional parameter added to a detector that existed without it (``lag`` of the
        window detectors): a spec that leaves it at its default resolves to the detector's
        *plain* form (:attr:`DetectorDef.plain`), whose kernel does not take it, so that such a
        spec keeps the resolved parameters, the key (``delta(window=3d)``, see
        :func:`engine.detect.spec_key`) and the kernel it had before the parameter existed.
    """

    name: str
    kind: str
    required: bool = True
    default: object = None
    doc: str = ""
    elide: bool = False


@dataclass(frozen=True)
class DetectorDef:
    """A registered detector (see the module docstring for the kernel contract).

    ``plain`` is the same detector without its ``elide`` parameters (same fn, output, lookback
    and doc; the kernel that does not take them), used by the specs that leave them at their
    defaults; None when the detector has no such parameter. Only the full form is in
    :data:`REGISTRY`.
    """

    fn: str
    kernel: Callable
    params: tuple[Param, ...]
    lookback: Callable[[dict], int]
    output: str
    doc: str
    plain: "DetectorDef | None" = field(default=None, repr=False, compare=False)


#: fn name -> detector; filled by the ``register`` calls in the detector modules
REGISTRY: dict[str, DetectorDef] = {}


def register(fn: str, *, kernel: Callable, params=(), lookback: Callable[[dict], int],
             output: str, doc: str, plain_kernel: Callable | None = None) -> DetectorDef:
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
    plain_kernel : numba dispatcher, optional
        The kernel of the detector's plain form (:attr:`DetectorDef.plain`): the same
        computation with every ``elide`` parameter at its default, taking the other parameters
        only. Required exactly when a parameter has ``elide=True``; ``lookback`` must then also
        accept the parameters without the elided ones.

    Raises
    ------
    ValueError
        On a programming error in the declaration (duplicate name, unknown kind or output, an
        elided parameter that is required or has no plain kernel).
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
    elided = [p.name for p in params if p.elide]
    if any(p.elide and p.required for p in params):
        raise ValueError(f"detector {fn!r}: an elided param must be optional ({elided})")
    if bool(elided) != (plain_kernel is not None):
        raise ValueError(f"detector {fn!r}: plain_kernel goes with elided params (got "
                         f"{elided} and plain_kernel={plain_kernel!r})")
    plain = None
    if elided:
        plain = DetectorDef(fn=fn, kernel=plain_kernel,
                            params=tuple(p for p in params if not p.elide), lookback=lookback,
                            output=output, doc=doc)
    d = DetectorDef(fn=fn, kernel=kernel, params=params, lookback=lookback, output=output,
                    doc=doc, plain=plain)
    REGISTRY[fn] = d
    return d
