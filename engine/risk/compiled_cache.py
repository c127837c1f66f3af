"""A verified model's compiled trees, cached: later runs score without importing scikit-learn.

Loading a model folder (:func:`engine.risk.artifact.load_artifact`) imports skops and with it
scikit-learn — 3 to 4 seconds of every ``veille score`` — to read ``model.skops`` and check it,
after which the run only needs the trees flattened by :mod:`engine.risk.trees` and, for the
sigmoid calibration ``veille train`` fits, two numbers. Once a model has been loaded with every
check passed, those are written here, and the next load of the same model reads them back.

Where: ``models/`` beside the kernel cache's ``numba/`` (:func:`engine.kernel_cache.cache_dir`),
checked as that folder is (owner-only; a folder others can write is not used), each entry one
sealed JSON file (arrays as the bytes of little-endian numbers: exact, infinities included)
named by the SHA-256 of this format, the model file's SHA-256, the installed scikit-learn's
version and the features the engine computes. ``VEILLE_NO_MODEL_CACHE=1`` turns it off.

What a cached load still checks, each time: the card (present, well formed), the model file's
SHA-256 against the card's (so a changed or truncated ``model.skops`` is refused exactly as
without the cache), the card's digest against the one the model file held when it was fully
checked (an edited card), the features against the engine's and the scikit-learn version
against the card's. Any difference, and any entry missing, damaged or not of this model, falls
back to the full load, which raises the error it raises without a cache. The seal detects
damage, not tampering: like the kernel cache (compiled machine code, which numba runs), the
folder is trusted as its owner's. Nothing is pickled.

Cached: models whose every calibrated classifier has a sigmoid calibration (``veille train``'s
default); an isotonic one is loaded in full each time. Predictions from a cached model are the
full model's bit for bit: the same trees, the same calibration formula (scikit-learn's
``_SigmoidCalibration.predict``: ``expit(-(a * T + b))``).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..kernel_cache import cache_dir, check_folder, read_sealed, trim_folder, write_sealed

CACHE_FORMAT = "veille-compiled-model/1"
#: largest entry read or written, in bytes (the bundled model's is about 100 KB)
CACHE_MAX_BYTES = 64 << 20
#: most entries kept (the oldest go first)
CACHE_MAX_FILES = 20
_ARRAYS = {"feature": "<i4", "threshold": "<f8", "missing_left": "|u1", "child": "<i4",
           "value": "<f8", "roots": "<i4", "depth": "<i8", "baseline": "<f8", "cover": "<f8"}


class SigmoidCalibration:
    """scikit-learn's ``_SigmoidCalibration`` at prediction: ``expit(-(a * T + b))``."""

    def __init__(self, a: float, b: float) -> None:
        self.a_, self.b_ = float(a), float(b)

    def predict(self, T: np.ndarray) -> np.ndarray:
        from scipy.special import expit

        return expit(-(self.a_ * np.asarray(T, dtype=np.float64).ravel() + self.b_))


def folder() -> Path | None:
    """``models/`` beside the kernel cache; None when turned off or not usable (quietly: a
    model loads without a cache)."""
    if os.environ.get("VEILLE_NO_MODEL_CACHE", "") not in ("", "0"):
        return None
    try:
        return check_folder(Path(cache_dir()).parent / "models")
    except Exception:                 # InputError or OSError: the full load works all the same
        return None


def key(model_sha256: str, sklearn_version: str, features) -> str:
    h = hashlib.sha256(f"{CACHE_FORMAT}\0{model_sha256}\0{sklearn_version}\0".encode())
    h.update("\x1f".join(features).encode())
    return h.hexdigest()


def _pack(a: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode()


def _unpack(text: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text, validate=True), dtype=dtype).astype(
        np.dtype(dtype).newbyteorder("="))


def entry_of(compiled, features, card_digest: str) -> dict | None:
    """The cache entry of a compiled model (:class:`engine.risk.trees.Calibrated`); None when
    it is not one this cache holds (a calibration other than sigmoid, trees without weights)."""
    if compiled is None:
        return None
    parts = []
    for forest, calibrator in compiled.parts:
        if type(calibrator).__name__ != "_SigmoidCalibration" or forest.cover is None:
            return None
        a, b = getattr(calibrator, "a_", None), getattr(calibrator, "b_", None)
        if not all(isinstance(v, (float, np.floating)) for v in (a, b)):
            return None
        parts.append({"n_features": int(forest.n_features),
                      "arrays": {n: _pack(getattr(forest, n), d) for n, d in _ARRAYS.items()},
                      "sigmoid": [float(a).hex(), float(b).hex()]})
    return {"format": CACHE_FORMAT, "features": list(features), "card_digest": card_digest,
            "parts": parts}


def compiled_of(entry: dict):
    """The :class:`engine.risk.trees.Calibrated` of an entry (raises on a malformed one)."""
    from .trees import Calibrated, Forest

    parts = []
    for part in entry["parts"]:
        arrays = {n: _unpack(part["arrays"][n], d) for n, d in _ARRAYS.items()}
        forest = Forest(n_features=int(part["n_features"]), **arrays)
        n = forest.value.size
        if not (forest.feature.size == forest.threshold.size == forest.missing_left.size
                == forest.child.size == forest.cover.size == n and forest.roots.size
                == forest.depth.size and forest.baseline.size == 1 and n > 0
                and forest.child.min() >= 0 and forest.child.max() < n
                and forest.roots.min() >= 0 and forest.roots.max() < n
                and forest.feature.min() >= 0 and forest.feature.max() < forest.n_features):
            raise ValueError("malformed trees")
        # a split's right child is child + 1: it must be a node too
        split = forest.child != np.arange(n)
        if (forest.child[split] + 1 >= n).any():
            raise ValueError("malformed trees")
        a, b = (float.fromhex(v) for v in part["sigmoid"])
        parts.append((forest, SigmoidCalibration(a, b)))
    if not parts:
        raise ValueError("no trees")
    return Calibrated(tuple(parts))


def read(where: Path, name: str) -> dict | None:
    """The entry named ``name``, or None: absent, unreadable, damaged, or another format."""
    payload = read_sealed(where / f"{name}.json", CACHE_MAX_BYTES)
    if payload is None:
        return None
    try:
        entry = json.loads(payload)
    except ValueError:
        return None
    if type(entry) is not dict or entry.get("format") != CACHE_FORMAT or \
            entry.get("key") != name:
        return None
    return entry


def write(where: Path, name: str, entry: dict) -> None:
    """Write an entry owner-only and atomically; quietly not when the folder refuses it."""
    payload = json.dumps({**entry, "key": name}, separators=(",", ":")).encode()
    if len(payload) <= CACHE_MAX_BYTES and write_sealed(where, f"{name}.json", payload):
        trim_folder(where, CACHE_MAX_FILES)


def load(directory: Path, expected_features):
    """``(LoadedModel without its scikit-learn object, compiled model)`` from the cache, or
    None when the full load must run (no entry, or anything the full load would refuse)."""
    from . import artifact as A

    where = folder()
    if where is None:
        return None
    card_path, model_path = directory / A.CARD_FILE, directory / A.MODEL_FILE
    try:
        card = A._read_card(card_path)
        data = A._read_bytes(model_path, A.MODEL_MAX_BYTES, "model file")
    except A.ModelError:
        return None
    sha = hashlib.sha256(data).hexdigest()
    if sha != card["model_sha256"]:
        return None
    installed = A.installed_sklearn()
    features = list(expected_features) if expected_features is not None else \
        list(card["features"])
    entry = read(where, key(sha, installed, features))
    if entry is None or entry.get("features") != features or \
            list(card["features"]) != features or \
            entry.get("card_digest") != A.card_digest(card):
        return None
    try:
        A._check_sklearn_version(card, model_path, installed)
        compiled = compiled_of(entry)
    except (A.ModelError, KeyError, TypeError, ValueError, IndexError):
        return None
    loaded = A.LoadedModel(model=None, features=tuple(features), card=card,
                           directory=directory, sha256=sha)
    return loaded, compiled


def store(loaded, compiled, expected_features) -> None:
    """Cache the compiled model of a fully checked load (when it is one this cache holds)."""
    from . import artifact as A

    where = folder()
    if where is None:
        return
    features = list(expected_features) if expected_features is not None else \
        list(loaded.features)
    entry = entry_of(compiled, features, A.card_digest(loaded.card))
    if entry is not None:
        write(where, key(loaded.sha256, A.installed_sklearn(), features), entry)
