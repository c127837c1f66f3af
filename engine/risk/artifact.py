"""The risk model's artifact: a trained scikit-learn model saved and loaded safely, with its card.

A model folder holds three files, written by :func:`save_artifact`:

- ``model.skops`` — a :mod:`skops.io` file (a zip of JSON and ``.npy`` arrays; never a pickle)
  holding ``{"format": "veille-risk-model", "format_version": 1, "model": ..., "features":
  [...], "card_digest": ...}``, where ``card_digest`` is the SHA-256 of the card's canonical
  body (the card without ``model_sha256``, as sorted compact JSON);
- ``card.json`` — the model card: what the caller gave, plus ``model_file``, ``model_sha256``
  (SHA-256 of ``model.skops``), ``features`` and ``libraries``;
- ``card.md`` — the same card for people. It is never read back.

The two halves sign each other: the card holds the model file's hash and the model file holds the
card's digest, so changing either is seen on load. :func:`load_artifact` checks, in this order,
and refuses with a :class:`~engine.errors.ModelError` naming the file and what differs:

a. ``card.json``: present, under 1 MiB, UTF-8 JSON, an object with the required fields;
b. ``model.skops``: present, under 64 MiB, its SHA-256 equal to the card's ``model_sha256``;
c. the file is a zip archive (a skops file); a pickle is refused here, never opened;
d. every type the file names is trusted by skops or listed in :data:`TRUSTED_TYPES`, and every
   scikit-learn type it names is listed in :data:`SKLEARN_TYPES`; only then is it loaded, from
   the bytes already hashed (so the file cannot change between the check and the load);
e. the loaded object is a veille model of a known format version, the card's features are the
   model's, and the card's digest is the one the model file holds; the model's gradient-boosted
   trees are well formed (every node index in range), since scikit-learn reads them without
   bounds checks;
f. the model's features are, in order, the features the running engine computes;
g. the model was trained with the installed scikit-learn's major.minor version.

Nothing in this module uses :mod:`pickle` or runs code taken from a file.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from ..sinks import fsync_dir

FORMAT = "veille-risk-model"
FORMAT_VERSION = 1
MODEL_FILE = "model.skops"
CARD_FILE = "card.json"
CARD_MD_FILE = "card.md"

#: largest card.json read, in bytes
CARD_MAX_BYTES = 1 << 20
#: largest model.skops read, in bytes
MODEL_MAX_BYTES = 64 << 20
#: largest total of the sizes the zip's members declare once uncompressed, in bytes
MODEL_MAX_UNZIPPED_BYTES = 512 << 20
#: most members in the zip
MODEL_MAX_MEMBERS = 200_000

#: card fields every card.json must have (save_artifact writes them)
REQUIRED_CARD_FIELDS = ("model_file", "model_sha256", "features", "libraries")

#: Types, beyond those skops trusts by default (scikit-learn's public estimators, builtins,
#: numpy arrays and ufuncs), that a veille model file may contain. Written out here, never
#: computed: it is the union of ``skops.io.get_untrusted_types`` over the models ``veille train``
#: saves — an isotonic or sigmoid ``CalibratedClassifierCV`` over a ``FrozenEstimator`` of a
#: ``HistGradientBoostingClassifier`` or of the logistic baseline (``SimpleImputer`` with
#: indicators, ``StandardScaler``, ``LogisticRegression``), and the bare gradient-boosting model.
#: tests/test_risk_artifact.py refits those models and fails when a library upgrade adds a type.
#: ``TreePredictor``'s content is checked after loading (see ``_check_tree_predictors``).
#: A gradient-boosting model given ``categorical_features`` needs ``functools.partial`` (of
#: ``sklearn.utils.validation.check_array``), deliberately not trusted: encode categories as
#: numbers instead.
TRUSTED_TYPES: tuple[str, ...] = (
    "numpy.dtype",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)

#: Every scikit-learn type a veille model file may name. skops trusts all of scikit-learn's
#: public estimators by default, some of which (like ``TreePredictor``) keep arrays that compiled
#: code indexes without bounds checks; a veille model is one of a few known shapes, so any other
#: scikit-learn type in a file is refused before anything is built. Written out, like
#: TRUSTED_TYPES, from the same models, and checked by the same test.
SKLEARN_TYPES: tuple[str, ...] = (
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.frozen._frozen.FrozenEstimator",
    "sklearn.impute._base.MissingIndicator",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.isotonic.IsotonicRegression",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._label.LabelEncoder",
)

_SHA256 = re.compile(r"[0-9a-f]{64}")
_RETRAIN = "Retrain the model with `veille train`."


@dataclass(frozen=True)
class LoadedModel:
    """A model read by :func:`load_artifact`, with everything checked.

    Attributes
    ----------
    model : estimator
        The fitted scikit-learn estimator (``predict_proba`` on the features, in order).
    features : tuple of str
        The feature names the model was trained on, in column order.
    card : dict
        The parsed ``card.json``.
    directory : pathlib.Path
        The model folder.
    sha256 : str
        SHA-256 of ``model.skops``, as the card records it.
    """

    model: Any
    features: tuple[str, ...]
    card: dict
    directory: Path
    sha256: str


# -- saving ----------------------------------------------------------------------------------


def save_artifact(directory: str | Path, *, model: Any, features: list[str], card: dict) -> Path:
    """Write a model folder: ``model.skops``, ``card.json`` and ``card.md``.

    The model is checked before anything is written: its file must name only trusted types
    (:data:`TRUSTED_TYPES`, :data:`SKLEARN_TYPES`) and its trees must be well formed, so a
    model that :func:`load_artifact` would refuse is never written. The three files are each
    written to a temporary name in the folder, flushed to disk, then renamed over their
    targets.

    Parameters
    ----------
    directory : str or pathlib.Path
        The model folder; created if missing. Existing files of an artifact are replaced.
    model : estimator
        A fitted scikit-learn classifier.
    features : list of str
        The model's feature names, in the order of its columns. Unique, non-empty.
    card : dict
        The model card, JSON values only (numpy scalars are converted; NaN and infinities are
        refused: write ``None`` for a figure that does not exist). ``card.md`` shows these fields
        when present: ``name``, ``intended_use``, ``limits``, ``model``, ``output``,
        ``created_at``, ``horizon`` or ``horizon_hours``, ``training`` (cohort, its hashes,
        seed, command...), ``metrics`` and ``metrics_*`` (name to number, or row to
        ``{column: number}``), ``libraries``; any other field is listed as is. ``model_file``,
        ``model_sha256`` and ``features`` are set here, and ``libraries`` (veille, python,
        numpy, scikit-learn, skops, polars versions: :func:`library_versions`) when the card
        has none; given ``libraries`` must record ``scikit-learn``.

    Returns
    -------
    pathlib.Path
        The model folder.

    Raises
    ------
    ModelError
        The model cannot be saved as a veille artifact (a type outside the trusted list, a
        malformed tree, a value skops cannot write) or a file cannot be written.
    ValueError
        ``features`` or ``card`` are not valid (a bug in the caller).
    """
    directory = Path(directory)
    features = _check_feature_list(features)
    body = _plain_card(card)
    if "features" in body and body["features"] != features:
        raise ValueError("save_artifact: card['features'] differs from features; give the "
                         "features once, in the features argument.")
    body.pop("model_sha256", None)
    body["model_file"] = MODEL_FILE
    body["features"] = features
    if not body.get("libraries"):
        body["libraries"] = library_versions()
    if (not isinstance(body["libraries"], dict)
            or not isinstance(body["libraries"].get("scikit-learn"), str)):
        raise ValueError("save_artifact: card['libraries'] must record the 'scikit-learn' "
                         "version (load_artifact checks it); leave libraries out to have them "
                         "filled.")
    _check_model_features(model, features, directory / MODEL_FILE)

    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": model,
               "features": list(features), "card_digest": card_digest(body)}
    model_path = directory / MODEL_FILE
    try:
        data = _sio().dumps(payload, compression=zipfile.ZIP_DEFLATED)
    except Exception as exc:  # skops refuses some objects (unsupported types, recursion)
        raise ModelError(f"the model cannot be written as a skops file ({type(exc).__name__}: "
                         f"{_short(exc)}); nothing was written.", path=str(model_path)) from None
    untrusted, unused = _foreign_types(data)
    if untrusted or unused:
        hint = (" (A gradient-boosting model given categorical_features keeps a "
                "functools.partial: encode categories as numbers instead.)"
                if "functools.partial" in untrusted else "")
        raise ModelError(f"the model holds types veille does not trust "
                         f"({_names(untrusted + unused)}), so it could not be loaded; nothing "
                         f"was written.{hint}", path=str(model_path))
    _check_tree_predictors(model, model_path)

    full = dict(body, model_sha256=hashlib.sha256(data).hexdigest())
    card_text = json.dumps(full, indent=2, ensure_ascii=False) + "\n"
    _write_files(directory, [(MODEL_FILE, data), (CARD_FILE, card_text.encode("utf-8")),
                             (CARD_MD_FILE, card_markdown(full).encode("utf-8"))])
    return directory


def card_digest(card: dict) -> str:
    """SHA-256 (hex) of a card's canonical body: the card without ``model_sha256``, as JSON
    with sorted keys, no spaces and non-ASCII characters kept."""
    body = {k: v for k, v in card.items() if k != "model_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def library_versions() -> dict[str, str | None]:
    """Versions of veille and of the libraries a model depends on (``None``: not installed)."""
    from .. import __version__ as veille_version
    out: dict[str, str | None] = {"veille": veille_version, "python": platform.python_version()}
    for name in ("numpy", "scikit-learn", "skops", "polars"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def card_markdown(card: dict) -> str:
    """The card as a short Markdown page (``card.md``): what people read, never what is checked."""
    done = {"name", "intended_use", "limits", "model", "output", "created_at", "horizon",
            "horizon_hours", "features", "training", "libraries", "model_file", "model_sha256"}
    lines = [f"# {card.get('name') or 'veille deterioration-risk model'}", "",
             f"Generated from `{CARD_FILE}`, the record that is checked on load; edit neither.",
             ""]
    if card.get("intended_use"):
        lines += ["## Intended use", "", str(card["intended_use"]), ""]
    limits = card.get("limits")
    if limits:
        lines += ["## Limits", ""]
        lines += ([f"- {x}" for x in limits] if isinstance(limits, list) else [str(limits)])
        lines.append("")
    model = [f"- {label}: {_fmt(card[key])}" for key, label in
             (("model", "model"), ("output", "output"), ("created_at", "trained"))
             if card.get(key) is not None]
    if card.get("horizon") is not None:
        model.append(f"- horizon: {_fmt(card['horizon'])}")
    elif card.get("horizon_hours") is not None:
        model.append(f"- horizon: {_fmt(card['horizon_hours'])} h")
    if model:
        lines += ["## Model", ""] + model + [""]
    feats = card.get("features") or []
    lines += [f"## Features ({len(feats)}, in column order)", ""]
    lines += [f"{i}. `{f}`" for i, f in enumerate(feats, 1)] + [""]
    training = card.get("training")
    if training:
        lines += ["## Training cohort", ""]
        lines += ([f"- {k}: {_fmt(v)}" for k, v in training.items()]
                  if isinstance(training, dict) else [_fmt(training)])
        lines.append("")
    for key in [k for k in card if k == "metrics" or k.startswith("metrics_")]:
        done.add(key)
        title = key.replace("metrics_", "metrics (").replace("_", " ")
        title = title[0].upper() + title[1:] + (")" if key != "metrics" else "")
        if card[key]:
            lines += [f"## {title}", ""] + _metrics_table(card[key]) + [""]
    libraries = card.get("libraries")
    if isinstance(libraries, dict) and libraries:
        lines += ["## Library versions", "", "| library | version |", "|---|---|"]
        lines += [f"| {_cell(k)} | {_cell(_fmt(v))} |" for k, v in libraries.items()] + [""]
    others = [k for k in card if k not in done]
    if others:
        lines += ["## Other fields", ""] + [f"- {k}: {_fmt(card[k])}" for k in others] + [""]
    lines += ["## Integrity", "", f"- model file: `{card.get('model_file', MODEL_FILE)}`",
              f"- SHA-256: `{card.get('model_sha256', '')}`", ""]
    return "\n".join(lines)


def _metrics_table(metrics) -> list[str]:
    """Figures by split (``{name: {split: value}}``) in one table, single figures in another."""
    if not isinstance(metrics, dict):
        return [_fmt(metrics)]
    split = {k: v for k, v in metrics.items() if isinstance(v, dict)}
    single = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    rows: list[str] = []
    if split:
        columns: list[str] = []
        for value in split.values():
            columns += [c for c in value if c not in columns]
        rows += [f"|  | {' | '.join(_cell(c) for c in columns)} |",
                 "|---" * (len(columns) + 1) + "|"]
        rows += [f"| {_cell(name)} | {' | '.join(_cell(_fmt(v.get(c))) for c in columns)} |"
                 for name, v in split.items()]
    if single:
        rows += [""] if rows else []
        rows += ["| metric | value |", "|---|---|"]
        rows += [f"| {_cell(k)} | {_cell(_fmt(v))} |" for k, v in single.items()]
    return rows


def _fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (int, str)):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _plain_card(card: dict) -> dict:
    """The card as plain JSON values (what card.json will read back as)."""
    if not isinstance(card, dict):
        raise ValueError(f"save_artifact: card must be a dict, not {type(card).__name__}.")

    def plain(obj):
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, Path):
            return str(obj)
        raise TypeError(f"{type(obj).__name__} is not a JSON value")

    try:
        text = json.dumps(card, default=plain, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"save_artifact: the card is not plain JSON ({exc}); use numbers, "
                         "strings, lists, dicts and None (for a missing figure).") from None
    return json.loads(text)


def _check_feature_list(features) -> list[str]:
    if isinstance(features, str) or not all(isinstance(f, str) and f for f in features):
        raise ValueError("save_artifact: features must be a list of non-empty strings.")
    features = list(features)
    dupes = sorted({f for f in features if features.count(f) > 1})
    if not features or dupes:
        raise ValueError("save_artifact: features must be a non-empty list without repeats"
                         + (f" ({_names(dupes)} repeated)." if dupes else "."))
    return features


def _write_files(directory: Path, files: list[tuple[str, bytes]]) -> None:
    """Write each file to a temporary name, flush it to disk, then rename them all over their
    targets: an error while writing leaves the folder as it was."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"cannot create the model folder ({exc.strerror or exc}).",
                         path=str(directory)) from None
    temps: list[tuple[str, Path]] = []
    target = directory
    try:
        for name, data in files:
            target = directory / name
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
            temps.append((tmp, target))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
        for tmp, target in temps:
            os.replace(tmp, target)
        fsync_dir(directory)
    except OSError as exc:
        raise ModelError(f"cannot be written ({exc.strerror or exc}).", path=str(target)) from None
    finally:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)


# -- loading ---------------------------------------------------------------------------------


def _sio():
    """:mod:`skops.io`, imported when a model file is written or read: importing it imports
    scikit-learn (3-4 s), which a run whose compiled model is cached does without
    (:mod:`engine.risk.compiled_cache`)."""
    import skops.io

    return skops.io


def installed_sklearn() -> str:
    """The installed scikit-learn's version, read from its metadata (without importing it)."""
    return metadata.version("scikit-learn")


def load_artifact(directory: str | Path, *,
                  expected_features: list[str] | None = None) -> LoadedModel:
    """Read and check a model folder written by :func:`save_artifact`.

    Checks run in the order given in the module's docstring; the first that fails raises. No
    code from the files runs before every type in ``model.skops`` is known to be trusted.

    Parameters
    ----------
    directory : str or pathlib.Path
        The model folder (``model.skops``, ``card.json``).
    expected_features : list of str, optional
        The features the running engine computes, in order; the model's must be the same.

    Returns
    -------
    LoadedModel

    Raises
    ------
    ModelError
        A file is missing, too large, changed, truncated or edited; ``model.skops`` is not a
        skops file or holds an untrusted type; the features or the scikit-learn version differ.
        The message names the file and what differs.
    """
    directory = Path(directory)
    card_path, model_path = directory / CARD_FILE, directory / MODEL_FILE
    if not directory.is_dir():
        raise ModelError("no such model folder; train one with `veille train`.",
                         path=str(directory))

    # a. the card
    card = _read_card(card_path)

    # b. the model file and its hash
    data = _read_bytes(model_path, MODEL_MAX_BYTES, "model file")
    sha = hashlib.sha256(data).hexdigest()
    if sha != card["model_sha256"]:
        raise ModelError(f"does not match its card ({CARD_FILE}): its SHA-256 is {sha[:12]}…, "
                         f"the card expects {card['model_sha256'][:12]}… — the file was changed "
                         f"or truncated (it is {len(data)} bytes). {_RETRAIN}",
                         path=str(model_path))

    # c. a zip archive, never a pickle
    _check_zip(data, model_path)

    # d. trusted types only, then load from the bytes already hashed
    try:
        untrusted, unused = _foreign_types(data)
    except Exception as exc:
        raise ModelError(f"is not a readable skops file ({type(exc).__name__}: {_short(exc)}). "
                         f"{_RETRAIN}", path=str(model_path)) from None
    if untrusted:
        raise ModelError(f"holds types veille does not trust ({_names(untrusted)}); it was not "
                         f"written by veille and was not loaded. {_RETRAIN}",
                         path=str(model_path))
    if unused:
        raise ModelError(f"holds scikit-learn types veille's models never use "
                         f"({_names(unused)}); it was not written by veille and was not loaded. "
                         f"{_RETRAIN}", path=str(model_path))
    try:
        payload, failure = _sio().loads(data, trusted=list(TRUSTED_TYPES)), None
    except Exception as exc:
        payload, failure = None, f"{type(exc).__name__}: {_short(exc)}"
    if failure is not None:
        _check_sklearn_version(card, model_path)    # the likely cause, named first
        raise ModelError(f"cannot be loaded ({failure}). {_RETRAIN}", path=str(model_path))

    # e. the veille format, and the card it was saved with
    model, features = _check_payload(payload, model_path)
    if list(card["features"]) != features:
        diff = _feature_diff(card["features"], features, "the card", "the model")
        raise ModelError(f"does not match {MODEL_FILE}: the card's features differ from the "
                         f"model's ({diff}); the card was edited. {_RETRAIN}",
                         path=str(card_path))
    if card_digest(card) != payload["card_digest"]:
        raise ModelError(f"does not match {MODEL_FILE}: the card was edited after training "
                         "(the SHA-256 of its fields, model_sha256 aside, is not the one "
                         f"{MODEL_FILE} holds). Restore the card or retrain with `veille train`.",
                         path=str(card_path))
    _check_model_features(model, features, model_path)
    _check_tree_predictors(model, model_path)

    # f. the features this engine computes
    if expected_features is not None and list(expected_features) != features:
        diff = _feature_diff(features, list(expected_features), "the model", "this engine")
        raise ModelError(f"was trained on other features than this engine computes ({diff}). "
                         f"{_RETRAIN}", path=str(model_path))

    # g. the scikit-learn it was trained with
    _check_sklearn_version(card, model_path)
    return LoadedModel(model=model, features=tuple(features), card=card, directory=directory,
                       sha256=sha)


def _read_bytes(path: Path, limit: int, what: str) -> bytes:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ModelError(f"not found; a model folder holds {MODEL_FILE}, {CARD_FILE} and "
                         f"{CARD_MD_FILE}, written by `veille train`.", path=str(path)) from None
    except OSError as exc:
        raise ModelError(f"cannot be read ({exc.strerror or exc}).", path=str(path)) from None
    if not path.is_file():
        raise ModelError(f"is not a file; expected the {what}.", path=str(path))
    if size > limit:
        raise ModelError(f"is {size} bytes, over the {limit}-byte limit for a {what}; it was not "
                         "read.", path=str(path))
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise ModelError(f"cannot be read ({exc.strerror or exc}).", path=str(path)) from None
    if len(data) > limit:
        raise ModelError(f"is over the {limit}-byte limit for a {what}; it was not read.",
                         path=str(path))
    return data


def _read_card(path: Path) -> dict:
    raw = _read_bytes(path, CARD_MAX_BYTES, "model card")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelError(f"is not UTF-8 text (byte {exc.start}); the card was damaged. "
                         f"{_RETRAIN}", path=str(path)) from None

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"duplicate key {_names(dupes)}")
        return dict(pairs)

    def no_constant(name):
        raise ValueError(f"{name} is not a JSON value")

    try:
        card = json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except json.JSONDecodeError as exc:
        raise ModelError(f"is not valid JSON ({exc.msg} at line {exc.lineno}, column "
                         f"{exc.colno}); the card was damaged. {_RETRAIN}",
                         path=str(path)) from None
    except (ValueError, RecursionError) as exc:
        raise ModelError(f"is not valid JSON ({_short(exc)}); the card was damaged. {_RETRAIN}",
                         path=str(path)) from None
    if not isinstance(card, dict):
        raise ModelError(f"is not a model card: a JSON object is expected, not a "
                         f"{type(card).__name__}. {_RETRAIN}", path=str(path))
    missing = [k for k in REQUIRED_CARD_FIELDS if k not in card]
    if missing:
        raise ModelError(f"is not a veille model card: it lacks {_names(missing)}. {_RETRAIN}",
                         path=str(path))
    if card["model_file"] != MODEL_FILE:
        raise ModelError(f"names model_file {card['model_file']!r}; veille reads only "
                         f"{MODEL_FILE!r}, beside the card.", path=str(path))
    sha = card["model_sha256"]
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise ModelError("has a model_sha256 that is not a SHA-256 (64 lowercase hex digits).",
                         path=str(path))
    feats = card["features"]
    if (not isinstance(feats, list) or not feats
            or not all(isinstance(f, str) and f for f in feats)):
        raise ModelError("has features that are not a non-empty list of names.", path=str(path))
    if not isinstance(card["libraries"], dict):
        raise ModelError("has libraries that are not an object of library versions.",
                         path=str(path))
    return card


def _check_zip(data: bytes, path: Path) -> None:
    buf = io.BytesIO(data)
    if not zipfile.is_zipfile(buf):
        kind = ("it is a pickle, and veille never loads pickles" if data[:1] == b"\x80"
                else "not a zip archive: a pickle? veille never loads pickles")
        raise ModelError(f"is not a skops file ({kind}); it was not opened. {_RETRAIN}",
                         path=str(path))
    try:
        with zipfile.ZipFile(buf) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ModelError(f"is not a readable skops file (a damaged zip archive: {_short(exc)}). "
                         f"{_RETRAIN}", path=str(path)) from None
    if "schema.json" not in {i.filename for i in infos}:
        raise ModelError("is a zip archive but not a skops file (no schema.json). "
                         f"{_RETRAIN}", path=str(path))
    unzipped = sum(i.file_size for i in infos)
    if len(infos) > MODEL_MAX_MEMBERS or unzipped > MODEL_MAX_UNZIPPED_BYTES:
        raise ModelError(f"is too large once unzipped ({len(infos)} members, {unzipped} bytes; "
                         f"the limits are {MODEL_MAX_MEMBERS} and {MODEL_MAX_UNZIPPED_BYTES}); "
                         "it was not loaded.", path=str(path))


def _foreign_types(data: bytes) -> tuple[list[str], list[str]]:
    """Types in a skops file that veille does not accept, without building anything:
    ``(untrusted, unused)`` — those skops does not trust by default and TRUSTED_TYPES does not
    list, and the scikit-learn types SKLEARN_TYPES does not list."""
    untrusted = [t for t in _sio().get_untrusted_types(data=data) if t not in TRUSTED_TYPES]
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        schema = json.loads(zf.read("schema.json"))
    named: set[str] = set()
    stack = [schema]
    while stack:                    # every node of the schema names its type in these two keys
        node = stack.pop()
        if isinstance(node, dict):
            cls, module = node.get("__class__"), node.get("__module__")
            if isinstance(cls, str) and isinstance(module, str):
                named.add(f"{module}.{cls}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    unused = sorted(t for t in named if (t.startswith("sklearn.") or t == "sklearn")
                    and t not in SKLEARN_TYPES and t not in untrusted)
    return untrusted, unused


def _check_payload(payload, path: Path) -> tuple[Any, list[str]]:
    keys = {"format", "format_version", "model", "features", "card_digest"}
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"is a skops file but not a veille risk model (format "
                         f"{FORMAT!r} expected). {_RETRAIN}", path=str(path))
    version = payload.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        newer = type(version) is int and version > FORMAT_VERSION
        raise ModelError(f"is format version {version!r}; this veille reads version "
                         f"{FORMAT_VERSION}" + ("; upgrade veille to read it." if newer
                                                else f". {_RETRAIN}"), path=str(path))
    if set(payload) != keys:
        odd = sorted(set(payload) ^ keys)
        raise ModelError(f"has other fields than a veille risk model ({_names(odd)}). "
                         f"{_RETRAIN}", path=str(path))
    features = payload["features"]
    if (not isinstance(features, list) or not features
            or not all(isinstance(f, str) and f for f in features)):
        raise ModelError(f"holds features that are not a list of names. {_RETRAIN}",
                         path=str(path))
    if not isinstance(payload["card_digest"], str):
        raise ModelError(f"holds no card digest. {_RETRAIN}", path=str(path))
    model = payload["model"]
    if not callable(getattr(model, "predict_proba", None)):
        raise ModelError(f"holds a {type(model).__name__}, not a classifier with "
                         f"predict_proba. {_RETRAIN}", path=str(path))
    return model, features


def _check_model_features(model, features: list[str], path: Path) -> None:
    """The model's own record of its columns (count, names) agrees with ``features``."""
    n = getattr(model, "n_features_in_", None)
    if n is not None and n != len(features):
        raise ModelError(f"the model takes {n} columns but {len(features)} features are named. "
                         f"{_RETRAIN}", path=str(path))
    names = getattr(model, "feature_names_in_", None)
    if names is not None and [str(x) for x in names] != list(features):
        diff = _feature_diff([str(x) for x in names], list(features), "the model",
                             "the features")
        raise ModelError(f"the model was fitted on other column names than its features "
                         f"({diff}). {_RETRAIN}", path=str(path))


def _check_tree_predictors(model, path: Path) -> None:
    """Every gradient-boosted tree in ``model`` is well formed.

    scikit-learn walks a ``TreePredictor``'s ``nodes`` array in compiled code without bounds
    checks, so a file with a child index or a feature index out of range would read memory out
    of bounds at the first prediction (skops can vouch for types, not content). Trees are
    written depth first, so every child comes after its parent: requiring that also rules out
    loops.
    """
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
    from sklearn.ensemble._hist_gradient_boosting.gradient_boosting import (
        BaseHistGradientBoosting,
    )
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

    def bad(what: str) -> ModelError:
        return ModelError(f"a tree of the gradient-boosting model is malformed ({what}); "
                          f"veille never writes such a model. {_RETRAIN}", path=str(path))

    for est in _objects_of(model, BaseHistGradientBoosting, path):
        if getattr(est, "_preprocessor", None) is not None:
            raise bad("it has a column preprocessor, which veille's models never have")
        n_features = getattr(est, "n_features_in_", None)
        if type(n_features) is not int or n_features < 1:
            raise bad("no column count")
        mapper = getattr(est, "_bin_mapper", None)
        is_cat = getattr(mapper, "is_categorical_", None)
        is_cat = (np.asarray(is_cat, dtype=bool)
                  if isinstance(is_cat, np.ndarray) and is_cat.shape == (n_features,) else None)
        predictors = getattr(est, "_predictors", None)
        if not isinstance(predictors, list):
            raise bad("no list of trees")
        for i, row in enumerate(predictors):
            if not isinstance(row, list):
                raise bad(f"iteration {i} is not a list of trees")
            for tree in row:
                if type(tree) is not TreePredictor:
                    raise bad(f"iteration {i} holds a {type(tree).__name__}")
                _check_tree(tree, n_features, is_cat, PREDICTOR_RECORD_DTYPE, bad, i)


def _check_tree(tree, n_features, is_cat, record_dtype, bad, i) -> None:
    nodes = getattr(tree, "nodes", None)
    if (not isinstance(nodes, np.ndarray) or nodes.ndim != 1 or nodes.dtype != record_dtype
            or nodes.size == 0):
        raise bad(f"iteration {i}: the nodes are not a non-empty array of tree records")
    bitsets = []
    for name in ("raw_left_cat_bitsets", "binned_left_cat_bitsets"):
        b = getattr(tree, name, None)
        if (not isinstance(b, np.ndarray) or b.ndim != 2 or b.shape[1] != 8
                or b.dtype != np.uint32):
            raise bad(f"iteration {i}: {name} is not an (n, 8) array of uint32")
        bitsets.append(b)
    n = nodes.size
    index = np.arange(n)
    inner = nodes["is_leaf"] == 0
    for side in ("left", "right"):
        child = nodes[side][inner].astype(np.int64)
        if ((child <= index[inner]) | (child >= n)).any():
            raise bad(f"iteration {i}: a node's {side} child is outside the tree or before it")
    feature = nodes["feature_idx"][inner].astype(np.int64)
    if ((feature < 0) | (feature >= n_features)).any():
        raise bad(f"iteration {i}: a split on column {int(feature.max())} of {n_features}")
    cat = inner & (nodes["is_categorical"] != 0)
    if cat.any():
        if (nodes["bitset_idx"][cat] >= min(b.shape[0] for b in bitsets)).any():
            raise bad(f"iteration {i}: a categorical split without its bitset")
        if is_cat is None or not is_cat[nodes["feature_idx"][cat]].all():
            raise bad(f"iteration {i}: a categorical split on a column that is not categorical")


def _objects_of(root, cls, path: Path, limit: int = 1_000_000):
    """Objects of ``cls`` reachable from ``root`` through attributes, lists, tuples and dicts."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, np.ndarray, np.generic,
                                              type)) or obj is None:
            continue
        seen.add(id(obj))
        if len(seen) > limit:
            raise ModelError(f"the model is too large to check (over {limit} objects).",
                             path=str(path))
        if isinstance(obj, cls):
            yield obj
        if isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())


def _check_sklearn_version(card: dict, path: Path, installed: str | None = None) -> None:
    """Refuse a model trained with another scikit-learn major.minor than ``installed``."""
    if installed is None:
        installed = installed_sklearn()
    recorded = card.get("libraries", {}).get("scikit-learn")
    if not isinstance(recorded, str):
        raise ModelError(f"does not record the scikit-learn version it was trained with; the "
                         f"installed one is {installed}. {_RETRAIN}", path=str(path))
    if _major_minor(recorded) != _major_minor(installed):
        raise ModelError(f"was trained with scikit-learn {recorded} but {installed} is "
                         "installed; tree internals change between versions, so it is not "
                         f"used. {_RETRAIN}", path=str(path))


def _major_minor(version: str) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else None


# -- messages --------------------------------------------------------------------------------


def _names(items, most: int = 5) -> str:
    items = list(items)
    shown = ", ".join(repr(x) for x in items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


def _feature_diff(have: list[str], want: list[str], a: str, b: str) -> str:
    """What differs between feature lists ``have`` (of ``a``) and ``want`` (of ``b``), naming
    the first few names."""
    parts = []
    only_have = [f for f in have if f not in want]
    only_want = [f for f in want if f not in have]
    if only_have:
        parts.append(f"only in {a}: {_names(only_have)}")
    if only_want:
        parts.append(f"only in {b}: {_names(only_want)}")
    if not parts:
        pos = next((k for k, (x, y) in enumerate(zip(have, want)) if x != y), None)
        if pos is not None:
            parts.append(f"out of order from position {pos + 1}: {have[pos]!r} in {a}, "
                         f"{want[pos]!r} in {b}")
        else:
            parts.append(f"{len(have)} names in {a}, {len(want)} in {b}")
    return "; ".join(parts)


def _short(exc: BaseException, most: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= most else text[:most] + "…"
