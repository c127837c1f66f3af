"""The risk model's artifact: a round trip gives the same model, and every tampered, truncated,
foreign or mismatched file is refused with a ModelError naming the file — before any code from
the file can run (the pickle and untrusted-type tests would create a sentinel file if it did)."""
from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import sklearn
import skops.io as sio
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from engine.errors import ModelError, VeilleError
from engine.risk import artifact
from engine.risk.artifact import (SKLEARN_TYPES, TRUSTED_TYPES, LoadedModel, card_digest,
                                  load_artifact, save_artifact)

N_FEATURES = 40
FEATURES = [f"feat_{i:02d}" for i in range(N_FEATURES)]
CARD = {
    "name": "veille deterioration risk (test)",
    "intended_use": "Rank home-monitored patients by 72-hour deterioration risk.",
    "limits": ["Trained on a synthetic cohort.", "Not a diagnosis."],
    "horizon": "72h",
    "training": {"cohort": "synthetic", "cohort_sha256": "ab" * 32, "seed": 7},
    "metrics": {"auroc": {"train": 0.81, "test": 0.77}, "brier": 0.093},
}


# -- models ------------------------------------------------------------------------------------


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    X[rng.random(X.shape) < 0.2] = np.nan
    y = (np.nan_to_num(X[:, 1]) - np.nan_to_num(X[:, 2]) + rng.normal(size=n) > 0.3)
    return X, y.astype(int)


def _hgb(X, y, **kw):
    return HistGradientBoostingClassifier(max_iter=15, random_state=0, **kw).fit(X, y)


def _logistic(X, y):
    return Pipeline([("impute", SimpleImputer(add_indicator=True)),
                     ("scale", StandardScaler()),
                     ("logistic", LogisticRegression(max_iter=500))]).fit(X, y)


def _calibrated(model, X, y, method):
    return CalibratedClassifierCV(FrozenEstimator(model), method=method).fit(X, y)


def _reference_models():
    """The kinds of model ``veille train`` saves (and the bare one the explainer reads)."""
    X, y = _data()
    fit, cal = slice(0, 300), slice(300, None)
    hgb, lr = _hgb(X[fit], y[fit]), _logistic(X[fit], y[fit])
    return {
        "hgb": hgb,
        "hgb_isotonic": _calibrated(hgb, X[cal], y[cal], "isotonic"),
        "hgb_sigmoid": _calibrated(hgb, X[cal], y[cal], "sigmoid"),
        "logistic": lr,
        "logistic_isotonic": _calibrated(lr, X[cal], y[cal], "isotonic"),
        "logistic_sigmoid": _calibrated(lr, X[cal], y[cal], "sigmoid"),
    }


@pytest.fixture(scope="module")
def models():
    return _reference_models()


@pytest.fixture(scope="module")
def saved(models, tmp_path_factory):
    """A pristine artifact of the calibrated gradient-boosting model, copied by ``art``."""
    return save_artifact(tmp_path_factory.mktemp("saved") / "model", model=models["hgb_isotonic"],
                         features=FEATURES, card=CARD)


@pytest.fixture
def art(saved, tmp_path):
    return Path(shutil.copytree(saved, tmp_path / "model"))


# -- helpers -----------------------------------------------------------------------------------


def _card(directory: Path) -> dict:
    return json.loads((directory / "card.json").read_text(encoding="utf-8"))


def _write_card(directory: Path, card: dict) -> None:
    (directory / "card.json").write_text(json.dumps(card, indent=2), encoding="utf-8")


def _replace_model(directory: Path, data: bytes) -> None:
    """Put ``data`` in model.skops and re-sign the card's hash to match, as an attacker who can
    write the folder would: only what the hash cannot see is left to catch it."""
    (directory / "model.skops").write_bytes(data)
    card = _card(directory)
    card["model_sha256"] = hashlib.sha256(data).hexdigest()
    _write_card(directory, card)


def _payload(directory: Path, model, features=FEATURES, **over) -> bytes:
    """A model file holding ``model`` with the digest of the folder's card (a valid signature)."""
    payload = {"format": "veille-risk-model", "format_version": 1, "model": model,
               "features": list(features), "card_digest": card_digest(_card(directory))}
    payload.update(over)
    return sio.dumps(payload)


def _schema(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return json.loads(zf.read("schema.json"))


def _sklearn_types(data: bytes) -> set[str]:
    """The scikit-learn types a skops file names."""
    out, stack = set(), [_schema(data)]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("__module__"), str) and node["__module__"].startswith("sklearn"):
                out.add(f"{node['__module__']}.{node['__class__']}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return out


def _refused(directory: Path, file: str, *fragments: str, **kw) -> str:
    """load_artifact refuses with a ModelError whose message starts with the file's path and
    holds every fragment."""
    with pytest.raises(ModelError) as info:
        load_artifact(directory, **kw)
    msg = str(info.value)
    assert isinstance(info.value, VeilleError)
    assert msg.startswith(str(directory / file) if file else str(directory)), msg
    assert info.value.path == (str(directory / file) if file else str(directory))
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    assert "Traceback" not in msg
    return msg


# -- round trip --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hgb_isotonic", "hgb_sigmoid", "logistic_isotonic",
                                  "logistic_sigmoid", "hgb"])
def test_round_trip_gives_the_same_probabilities(models, kind, tmp_path):
    X, _ = _data(n=200, seed=1)
    model = models[kind]
    save_artifact(tmp_path / "m", model=model, features=FEATURES, card=CARD)
    loaded = load_artifact(tmp_path / "m", expected_features=FEATURES)
    assert isinstance(loaded, LoadedModel)
    assert np.array_equal(loaded.model.predict_proba(X), model.predict_proba(X))
    assert loaded.features == tuple(FEATURES)
    assert loaded.directory == tmp_path / "m"
    assert loaded.sha256 == hashlib.sha256((tmp_path / "m/model.skops").read_bytes()).hexdigest()
    with pytest.raises(AttributeError):
        loaded.sha256 = "0" * 64


def test_card_files(art):
    assert sorted(os.listdir(art)) == ["card.json", "card.md", "model.skops"]  # no temp left
    card = _card(art)
    sha = hashlib.sha256((art / "model.skops").read_bytes()).hexdigest()
    assert card["model_sha256"] == sha
    assert card["model_file"] == "model.skops"
    assert card["features"] == FEATURES
    assert card["metrics"] == CARD["metrics"] and card["name"] == CARD["name"]
    assert card["libraries"]["scikit-learn"] == sklearn.__version__
    assert set(card["libraries"]) == {"veille", "python", "numpy", "scikit-learn", "skops",
                                      "polars"}
    md = (art / "card.md").read_text(encoding="utf-8")
    assert sha in md and "SHA-256" in md
    for text in (CARD["name"], CARD["intended_use"], "Not a diagnosis.", "72h", "ab" * 32,
                 "| auroc | 0.81 | 0.77 |", "| brier | 0.093 |", FEATURES[0], FEATURES[-1],
                 f"| scikit-learn | {sklearn.__version__} |"):
        assert text in md, text
    assert md.index(FEATURES[0]) < md.index(FEATURES[1]) < md.index(FEATURES[-1])
    assert all((os.stat(art / f).st_mode & 0o777) == 0o644 for f in os.listdir(art))


def test_card_markdown_reads_the_trainers_fields():
    md = artifact.card_markdown({
        "name": "site", "horizon_hours": 48.0, "features": ["a", "b"],
        "metrics_test_split": {"gradient_boosting": {"n": 100, "auroc": 0.8123},
                               "news2": {"n": 100}},
        "event_types": ["fall"], "model_sha256": "f" * 64})
    for text in ("# site", "- horizon: 48 h", "## Metrics (test split)", "|  | n | auroc |",
                 "| gradient_boosting | 100 | 0.8123 |", "| news2 | 100 | — |",
                 '- event_types: ["fall"]', "1. `a`", "SHA-256: `" + "f" * 64):
        assert text in md, text


def test_card_layout_does_not_matter(art):
    """The digest is over the card's fields, not its text: reformatting card.json is harmless."""
    card = _card(art)
    (art / "card.json").write_text(json.dumps(dict(reversed(list(card.items())))),
                                   encoding="utf-8")
    assert load_artifact(art).card == card


def test_save_replaces_an_artifact_and_keeps_given_libraries(models, art):
    libs = {"scikit-learn": sklearn.__version__, "numpy": np.__version__}
    save_artifact(art, model=models["logistic_sigmoid"], features=FEATURES,
                  card=dict(CARD, libraries=libs, metrics={"auroc": np.float32(0.5)}))
    loaded = load_artifact(art)
    assert loaded.card["libraries"] == libs
    assert loaded.card["metrics"] == {"auroc": 0.5}
    assert isinstance(loaded.model.calibrated_classifiers_[0].estimator, FrozenEstimator)
    assert sorted(os.listdir(art)) == ["card.json", "card.md", "model.skops"]


def test_save_refuses_bad_arguments(models, tmp_path):
    model = models["hgb"]
    with pytest.raises(ValueError, match="repeats"):
        save_artifact(tmp_path, model=model, features=FEATURES[:-1] + [FEATURES[0]], card=CARD)
    with pytest.raises(ValueError, match="not plain JSON"):
        save_artifact(tmp_path, model=model, features=FEATURES, card={"auroc": float("nan")})
    with pytest.raises(ValueError, match="features"):
        save_artifact(tmp_path, model=model, features=FEATURES,
                      card={"features": FEATURES[::-1]})
    with pytest.raises(ValueError, match="must record the 'scikit-learn' version"):
        save_artifact(tmp_path, model=model, features=FEATURES,
                      card={"libraries": {"numpy": np.__version__}})
    with pytest.raises(ModelError, match="takes 40 columns but 39"):
        save_artifact(tmp_path, model=model, features=FEATURES[:-1], card=CARD)
    assert os.listdir(tmp_path) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelError) as info:
        save_artifact(tmp_path / "file", model=model, features=FEATURES, card=CARD)
    assert str(info.value).startswith(str(tmp_path / "file"))


# -- a. the card -------------------------------------------------------------------------------


def test_missing_folder_and_files(art, tmp_path):
    _refused(tmp_path / "nowhere", "", "no such model folder")
    (art / "model.skops").unlink()
    _refused(art, "model.skops", "not found")
    (art / "card.json").unlink()
    _refused(art, "card.json", "not found", "veille train")


@pytest.mark.parametrize("text, fragment", [
    ("not json {", "is not valid JSON"),
    ("[1, 2]", "a JSON object is expected, not a list"),
    ('{"model_sha256": "x", "model_sha256": "y"}', "duplicate key 'model_sha256'"),
    ('{"auroc": NaN}', "NaN is not a JSON value"),
    ('{"name": "no model"}', "it lacks 'model_file', 'model_sha256', 'features', 'libraries'"),
])
def test_card_that_is_not_a_card(art, text, fragment):
    (art / "card.json").write_text(text, encoding="utf-8")
    _refused(art, "card.json", fragment)


def test_card_not_utf8_or_too_large(art):
    (art / "card.json").write_bytes(b'{"name": "\xff"}')
    _refused(art, "card.json", "is not UTF-8")
    (art / "card.json").write_bytes(b" " * (artifact.CARD_MAX_BYTES + 1))
    _refused(art, "card.json", "over the 1048576-byte limit")


@pytest.mark.parametrize("field, value, fragment", [
    ("model_file", "../elsewhere.skops", "veille reads only 'model.skops'"),
    ("model_sha256", "ABC", "not a SHA-256"),
    ("features", [], "not a non-empty list of names"),
    ("libraries", "sklearn", "not an object of library versions"),
])
def test_card_fields_checked(art, field, value, fragment):
    card = _card(art)
    card[field] = value
    _write_card(art, card)
    _refused(art, "card.json", fragment)


# -- b. the hash -------------------------------------------------------------------------------


def test_one_changed_byte_is_refused(art):
    data = bytearray((art / "model.skops").read_bytes())
    data[len(data) // 2] ^= 0x01
    (art / "model.skops").write_bytes(bytes(data))
    _refused(art, "model.skops", "does not match its card (card.json)", "SHA-256",
             _card(art)["model_sha256"][:12], "changed or truncated")


def test_truncated_model_is_refused(art):
    data = (art / "model.skops").read_bytes()
    (art / "model.skops").write_bytes(data[: len(data) // 3])
    _refused(art, "model.skops", "does not match its card", "changed or truncated",
             f"it is {len(data) // 3} bytes")


def test_oversized_model_is_not_read(art, monkeypatch):
    monkeypatch.setattr(artifact, "MODEL_MAX_BYTES", 1000)
    _refused(art, "model.skops", "over the 1000-byte limit")


# -- c. never a pickle -------------------------------------------------------------------------


class PickleBomb:
    """Unpickling this makes a folder: the proof that a pickle was opened."""

    def __init__(self, sentinel: Path):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (os.mkdir, (self.sentinel,))


def test_pickle_renamed_to_skops_is_never_unpickled(art, tmp_path):
    sentinel = tmp_path / "pickle-ran"
    _replace_model(art, pickle.dumps(PickleBomb(sentinel)))
    _refused(art, "model.skops", "is not a skops file (it is a pickle, and veille never loads "
             "pickles); it was not opened")
    assert not sentinel.exists()
    # the bomb is live: unpickling it (here, on purpose) makes its sentinel
    control = tmp_path / "pickle-control"
    pickle.loads(pickle.dumps(PickleBomb(control)))
    assert control.exists()


def test_other_files_are_not_skops_files(art):
    _replace_model(art, b"definitely not a zip" * 10)
    _refused(art, "model.skops", "is not a skops file (not a zip archive: a pickle? veille "
             "never loads pickles)")
    buf = Path(art / "x.zip")
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("hello.txt", "hello")
    _replace_model(art, buf.read_bytes())
    _refused(art, "model.skops", "not a skops file (no schema.json)")


def test_zip_bomb_is_refused(art, monkeypatch):
    monkeypatch.setattr(artifact, "MODEL_MAX_UNZIPPED_BYTES", 10_000)
    _refused(art, "model.skops", "too large once unzipped")


# -- d. trusted types only ---------------------------------------------------------------------


class Tripwire:
    """Building this from a file makes a folder: the proof that code from the file ran."""

    def __init__(self, sentinel: Path):
        self.sentinel = str(sentinel)

    def predict_proba(self, X):
        return X

    def __setstate__(self, state):
        os.mkdir(state["sentinel"])
        self.__dict__.update(state)


def test_untrusted_type_is_refused_before_any_code_runs(art, tmp_path):
    sentinel = tmp_path / "setstate-ran"
    data = _payload(art, Tripwire(sentinel))
    _replace_model(art, data)
    msg = _refused(art, "model.skops", "holds types veille does not trust", "Tripwire",
                   "was not loaded")
    assert f"{Tripwire.__module__}.Tripwire" in msg
    assert not sentinel.exists()
    # the tripwire is live: loading it with its type trusted (here, on purpose) runs __setstate__
    control = tmp_path / "setstate-control"
    sio.loads(_payload(art, Tripwire(control)), trusted=[f"{Tripwire.__module__}.Tripwire"])
    assert control.exists()


def test_untrusted_types_are_named_five_at_most(art):
    class_names = [type(f"T{i}", (), {"__module__": "evil"}) for i in range(7)]
    state = {"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode",
             "key_types": {"__class__": "list", "__module__": "builtins",
                           "__loader__": "ListNode", "content": []},
             "content": {f"k{i}": {"__class__": c.__name__, "__module__": "evil",
                                   "__loader__": "ObjectNode"}
                         for i, c in enumerate(class_names)},
             "protocol": _schema(sio.dumps({}))["protocol"], "_skops_version": "0.16.0"}
    buf = art / "crafted.zip"
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("schema.json", json.dumps(state))
    _replace_model(art, buf.read_bytes())
    msg = _refused(art, "model.skops", "'evil.T0'", "'evil.T4'", "and 2 more")
    assert "evil.T5" not in msg


def test_unused_scikit_learn_type_is_refused(art, tmp_path):
    """skops trusts every scikit-learn estimator; veille accepts only those its models use."""
    from sklearn.svm import SVC
    X, y = _data(n=100)
    svc = SVC().fit(np.nan_to_num(X), y)
    _replace_model(art, _payload(art, svc))
    _refused(art, "model.skops", "scikit-learn types veille's models never use",
             "'sklearn.svm._classes.SVC'", "was not loaded")
    with pytest.raises(ModelError, match="sklearn.svm._classes.SVC"):
        save_artifact(tmp_path / "svc", model=svc, features=FEATURES, card=CARD)
    assert not (tmp_path / "svc").exists()


def test_save_refuses_a_model_it_could_not_load(tmp_path):
    """A gradient-boosting model given categorical_features keeps a functools.partial of
    check_array: that type is not trusted, so the model is refused before anything is written."""
    X, y = _data(n=200)
    X[:, 0] = np.random.default_rng(0).integers(0, 4, len(X))
    mask = np.zeros(N_FEATURES, dtype=bool)
    mask[0] = True
    model = _hgb(X, y, categorical_features=mask)
    with pytest.raises(ModelError) as info:
        save_artifact(tmp_path / "m", model=model, features=FEATURES, card=CARD)
    msg = str(info.value)
    assert msg.startswith(str(tmp_path / "m" / "model.skops"))
    assert "'functools.partial'" in msg and "nothing was written" in msg
    assert "encode categories as numbers" in msg
    assert not (tmp_path / "m").exists() or os.listdir(tmp_path / "m") == []


# -- e. the format and the card it was saved with ----------------------------------------------


def test_card_with_an_edited_metric_is_refused(art):
    card = _card(art)
    card["metrics"]["auroc"]["test"] = 0.99
    _write_card(art, card)
    _refused(art, "card.json", "does not match model.skops", "the card was edited")


@pytest.mark.parametrize("edit, fragments", [
    (lambda f: [f[1], f[0]] + f[2:], ["out of order from position 1: 'feat_01' in the card, "
                                      "'feat_00' in the model"]),
    (lambda f: ["feat_renamed"] + f[1:], ["only in the card: 'feat_renamed'",
                                          "only in the model: 'feat_00'"]),
])
def test_card_with_edited_features_is_refused(art, edit, fragments):
    card = _card(art)
    card["features"] = edit(card["features"])
    _write_card(art, card)
    _refused(art, "card.json", "does not match model.skops", "the card's features differ",
             *fragments)


def test_model_file_from_another_card_is_refused(art, models):
    """A model file swapped in from another training run (its hash re-signed in the card)."""
    other = save_artifact(art.parent / "other", model=models["hgb"], features=FEATURES,
                          card=dict(CARD, name="another run"))
    _replace_model(art, (other / "model.skops").read_bytes())
    _refused(art, "card.json", "the card was edited")


@pytest.mark.parametrize("over, fragment", [
    ({"format": "something-else"}, "not a veille risk model"),
    ({"format_version": 2}, "format version 2; this veille reads version 1; upgrade veille"),
    ({"extra": 1}, "other fields than a veille risk model ('extra')"),
])
def test_payload_format_checked(art, models, over, fragment):
    _replace_model(art, _payload(art, models["hgb_isotonic"], **over))
    _refused(art, "model.skops", fragment)


def test_payload_that_is_not_a_classifier(art):
    _replace_model(art, _payload(art, [1, 2, 3]))
    _refused(art, "model.skops", "holds a list, not a classifier")


@pytest.mark.parametrize("field, value, fragment", [
    ("left", 10**6, "left child is outside the tree"),
    ("right", 0, "right child is outside the tree or before it"),
    ("feature_idx", N_FEATURES, f"a split on column {N_FEATURES} of {N_FEATURES}"),
    ("is_categorical", 1, "categorical split"),
])
def test_malformed_tree_is_refused(art, field, value, fragment):
    """scikit-learn walks trees without bounds checks; an index out of range is refused."""
    model = load_artifact(art).model
    hgb = model.calibrated_classifiers_[0].estimator.estimator
    tree = hgb._predictors[3][0]
    root = int(np.flatnonzero(tree.nodes["is_leaf"] == 0)[0])
    tree.nodes[field][root] = value
    _replace_model(art, _payload(art, model))
    _refused(art, "model.skops", "a tree of the gradient-boosting model is malformed", fragment)
    with pytest.raises(ModelError, match="malformed"):
        save_artifact(art.parent / "again", model=model, features=FEATURES, card=CARD)


def _break_trees(data: bytes) -> bytes:
    """The same skops file with its trees' nodes pointing at a bitset array: every type stays
    trusted, but building a tree fails. (skops writes an object met twice in full both times,
    and builds the first: every copy is edited.)"""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    schema = json.loads(files["schema.json"])
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("__class__") == "TreePredictor":
                attrs = node["content"]["content"]
                attrs["nodes"]["file"] = attrs["raw_left_cat_bitsets"]["file"]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    files["schema.json"] = json.dumps(schema).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return buf.getvalue()


def test_model_that_cannot_be_built_is_refused(art, models):
    _replace_model(art, _break_trees(_payload(art, models["hgb_isotonic"])))
    _refused(art, "model.skops", "cannot be loaded (TypeError")
    # when the card says another scikit-learn trained it, that is named as the likely cause
    card = _card(art)
    card["libraries"]["scikit-learn"] = "0.24.2"
    _write_card(art, card)
    _replace_model(art, _break_trees(_payload(art, models["hgb_isotonic"])))
    _refused(art, "model.skops", "trained with scikit-learn 0.24.2 but")


# -- f. the engine's features ------------------------------------------------------------------


@pytest.mark.parametrize("expected, fragments", [
    (FEATURES[:-1], ["only in the model: 'feat_39'"]),
    (FEATURES + ["new_one"], ["only in this engine: 'new_one'"]),
    (FEATURES[:5][::-1] + FEATURES[5:], ["out of order from position 1: 'feat_00' in the "
                                         "model, 'feat_04' in this engine"]),
])
def test_expected_features_must_match(art, expected, fragments):
    _refused(art, "model.skops", "trained on other features than this engine computes",
             *fragments, expected_features=expected)


# -- g. the scikit-learn it was trained with ---------------------------------------------------


def test_other_scikit_learn_version_is_refused(models, tmp_path):
    major, minor = sklearn.__version__.split(".")[:2]
    other = f"{major}.{int(minor) + 1}.0"
    d = save_artifact(tmp_path / "m", model=models["hgb_isotonic"], features=FEATURES,
                      card=dict(CARD, libraries={"scikit-learn": other}))
    _refused(d, "model.skops", f"trained with scikit-learn {other} but "
             f"{sklearn.__version__} is installed", "veille train")
    # another patch release of the same major.minor is fine
    same = save_artifact(tmp_path / "same", model=models["hgb_isotonic"], features=FEATURES,
                         card=dict(CARD, libraries={"scikit-learn": f"{major}.{minor}.999"}))
    assert load_artifact(same).features == tuple(FEATURES)


def test_version_check_can_be_given_the_installed_version(tmp_path):
    card = {"libraries": {"scikit-learn": "1.9.1"}}
    artifact._check_sklearn_version(card, tmp_path / "model.skops", installed="1.9.3")
    with pytest.raises(ModelError, match=r"scikit-learn 1\.9\.1 but 2\.0\.0 is installed"):
        artifact._check_sklearn_version(card, tmp_path / "model.skops", installed="2.0.0")
    with pytest.raises(ModelError, match="does not record the scikit-learn version"):
        artifact._check_sklearn_version({"libraries": {}}, tmp_path / "model.skops")


# -- the trusted types -------------------------------------------------------------------------


def test_trusted_types_are_exactly_what_veille_models_need(models):
    """Refit every kind of model veille saves: a library upgrade that adds a type fails here,
    not in a user's hands (and a type no longer needed is dropped from the lists)."""
    untrusted, sklearn_types = set(), set()
    for model in models.values():
        data = sio.dumps(model)
        untrusted |= set(sio.get_untrusted_types(data=data))
        sklearn_types |= _sklearn_types(data)
    assert untrusted <= set(TRUSTED_TYPES), sorted(untrusted - set(TRUSTED_TYPES))
    assert set(TRUSTED_TYPES) == untrusted, sorted(set(TRUSTED_TYPES) - untrusted)
    assert sklearn_types <= set(SKLEARN_TYPES), sorted(sklearn_types - set(SKLEARN_TYPES))
    assert set(SKLEARN_TYPES) == sklearn_types, sorted(set(SKLEARN_TYPES) - sklearn_types)


@pytest.mark.parametrize("name", ["TRUSTED_TYPES", "SKLEARN_TYPES"])
def test_trusted_types_are_written_out(name):
    tree = ast.parse(Path(artifact.__file__).read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.AnnAssign)
                and getattr(n.target, "id", None) == name)
    assert isinstance(node.value, ast.Tuple)
    assert all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.value.elts)
    assert len(set(getattr(artifact, name))) == len(getattr(artifact, name))


def test_trusted_types_are_narrow():
    generic = ("builtins.", "os.", "posix.", "subprocess.", "functools.", "operator.", "sys.",
               "importlib.", "pickle.", "shutil.", "io.", "numpy.load", "builtins.getattr")
    assert not [t for t in TRUSTED_TYPES if t.startswith(generic)]
    assert all(t.startswith("sklearn.") or t == "numpy.dtype" for t in TRUSTED_TYPES)
