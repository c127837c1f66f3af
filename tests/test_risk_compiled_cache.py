"""engine.risk.compiled_cache: a checked model's compiled trees, read back without scikit-learn;
every check the full load makes on the model folder still made, or the full load run."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.errors import ModelError
from engine.kernel_cache import cache_dir
from engine.paths import bundled
from engine.risk import compiled_cache as C
from engine.risk import features as F
from engine.risk.model import DEFAULT_MODEL, RiskModel


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder of the test's own."""
    where = tmp_path / "models"
    where.mkdir(mode=0o700)
    monkeypatch.setattr(C, "folder", lambda: where)
    return where


@pytest.fixture
def model_dir(tmp_path):
    return Path(shutil.copytree(bundled("models") / DEFAULT_MODEL, tmp_path / "model"))


def _frame(seed: int = 1, n: int = 300) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    names = F.feature_names()
    X = rng.normal(0.0, 3.0, (n, len(names)))
    X[rng.random(X.shape) < 0.3] = np.nan
    return pl.DataFrame({n: X[:, j] for j, n in enumerate(names)})


def test_a_cached_model_scores_and_explains_as_the_full_one(cache, model_dir):
    full = RiskModel.load(model_dir)
    assert full.loaded.model is not None and len(list(cache.iterdir())) == 1
    cached = RiskModel.load(model_dir)
    assert cached.loaded.model is None                # no scikit-learn object read
    frame = _frame()
    assert np.array_equal(cached.predict(frame), full.predict(frame))
    assert np.array_equal(cached.predict(frame), full.predict_reference(frame))
    assert np.array_equal(cached.contributions(frame), full.contributions(frame))
    assert cached.explain(frame.head(20)) == full.explain(frame.head(20))
    assert (cached.sha256, cached.card, cached.features) == (full.sha256, full.card,
                                                             full.features)
    # the references read the full model on demand, checked as ever
    assert np.array_equal(cached.predict_reference(frame), full.predict_reference(frame))
    assert cached.loaded.model is not None


def test_a_changed_model_file_is_refused_with_a_warm_cache(cache, model_dir):
    RiskModel.load(model_dir)
    data = bytearray((model_dir / "model.skops").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (model_dir / "model.skops").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match its card"):
        RiskModel.load(model_dir)


def test_an_edited_card_is_refused_with_a_warm_cache(cache, model_dir):
    RiskModel.load(model_dir)
    card = json.loads((model_dir / "card.json").read_text())
    card["name"] = "edited"
    (model_dir / "card.json").write_text(json.dumps(card))
    assert C.load(model_dir, list(F.feature_names())) is None
    with pytest.raises(ModelError, match="card was edited"):
        RiskModel.load(model_dir)


def test_a_damaged_or_foreign_entry_is_not_used(cache, model_dir):
    RiskModel.load(model_dir)
    (entry,) = cache.iterdir()
    blob = bytearray(entry.read_bytes())
    blob[-10] ^= 0x01                                  # the seal no longer matches
    entry.write_bytes(bytes(blob))
    assert C.load(model_dir, list(F.feature_names())) is None
    model = RiskModel.load(model_dir)                  # the full load, which caches it again
    assert model.loaded.model is not None
    assert C.load(model_dir, list(F.feature_names())) is not None
    # an entry of this model under another name (another scikit-learn, other features)
    other = cache / (C.key("0" * 64, "1.9.1", ["x"]) + ".json")
    shutil.copy(entry, other)
    assert C.read(cache, other.stem) is None


def test_other_features_or_scikit_learn_miss_the_cache(cache, model_dir, monkeypatch):
    RiskModel.load(model_dir)
    names = list(F.feature_names())
    assert C.load(model_dir, names) is not None
    assert C.load(model_dir, names[::-1]) is None
    from engine.risk import artifact
    monkeypatch.setattr(artifact, "installed_sklearn", lambda: "1.8.0")
    assert C.load(model_dir, names) is None


@pytest.mark.parametrize("what", ["child", "feature", "roots"])
def test_trees_out_of_range_in_an_entry_are_refused(cache, model_dir, what):
    full = RiskModel.load(model_dir)
    entry = C.entry_of(full._compiled(), full.features, "d")
    arr = C._unpack(entry["parts"][0]["arrays"][what], C._ARRAYS[what])
    arr[0] = 10**6
    entry["parts"][0]["arrays"][what] = C._pack(arr, C._ARRAYS[what])
    with pytest.raises(ValueError, match="malformed"):
        C.compiled_of(entry)


def test_an_isotonic_model_is_not_cached():
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.frozen import FrozenEstimator

    from engine.risk.trees import compile_model
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] > 0).astype(int)
    hgb = HistGradientBoostingClassifier(max_iter=5).fit(X, y)
    iso = CalibratedClassifierCV(FrozenEstimator(hgb), method="isotonic").fit(X, y)
    sig = CalibratedClassifierCV(FrozenEstimator(hgb), method="sigmoid").fit(X, y)
    assert C.entry_of(compile_model(iso), ["a", "b", "c"], "d") is None
    assert C.entry_of(compile_model(sig), ["a", "b", "c"], "d") is not None


def test_the_cache_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("VEILLE_NO_MODEL_CACHE", "1")
    assert C.folder() is None


def test_a_cached_load_imports_neither_scikit_learn_nor_skops(tmp_path):
    """In a new process, as the command runs: the first load fills the cache, the second reads
    it. (The compiled kernels are the user's own: their folder is linked in.)"""
    base = tmp_path / "veille"
    base.mkdir(mode=0o700)
    (base / "numba").symlink_to(Path(cache_dir()))
    env = {**os.environ, "VEILLE_CACHE_DIR": str(base)}
    code = ("import sys\n"
            "from engine.risk.model import RiskModel\n"
            "m = RiskModel.load('default')\n"
            "print(m.loaded.model is None, 'sklearn' in sys.modules, 'skops' in sys.modules)\n")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env) for _ in range(2)]
    outs = [r.stdout.strip().splitlines()[-1:] for r in runs]
    assert outs == [["False True True"], ["True False False"]], runs[-1].stderr[-2000:]
    assert [p.stat().st_mode & 0o777 for p in (base / "models").iterdir()] == [0o600]
