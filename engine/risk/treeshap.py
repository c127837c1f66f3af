"""SHAP values of the risk model's trees, compiled: the explanations without importing shap.

The explanations of the open alerts (which features raised the risk most) are the exact SHAP
values of the gradient-boosted trees under the path-dependent feature perturbation — what
``shap.TreeExplainer(model).shap_values(X)`` gives for a ``HistGradientBoostingClassifier``,
in log-odds. Importing shap to compute them cost every run of the command 1.2 s; the algorithm
is small. :func:`shap_values` is Lundberg et al.'s Algorithm 2 ("Consistent individualized
feature attribution for tree ensembles", 2018; Nature Machine Intelligence 2020) written as
shap's own ``tree_shap.h`` writes it — the same path extension, unwinding and unwound sums,
the same operations in the same order, the hot child visited before the cold one, the trees in
order — over the flattened trees of :mod:`engine.risk.trees` (a split's left child is
``child[c]``, its right one ``child[c] + 1``, a leaf is its own child; a missing value follows
the child ``missing_left`` names, another goes left when ``x <= threshold``). The weight of a
node is the number of training samples that reached it (the trees' ``count``), as shap reads it.

shap stays the reference: the tests compare the two on the bundled model and on models
trained on random data, with missing values.

numba cannot load a recursive function from its cache, so the recursion keeps its own stack:
each recursion level has its own copy of the path (``level`` rows of ``pd``, ``pz``, ``po``,
``pw``), which the level's two children both start from.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..config import JIT, JIT_PARALLEL


@njit(**JIT)
def _extend(pd, pz, po, pw, depth, zero, one, feat):
    """shap's ``extend_path`` on one level's path."""
    pd[depth] = feat
    pz[depth] = zero
    po[depth] = one
    pw[depth] = 1.0 if depth == 0 else 0.0
    for i in range(depth - 1, -1, -1):
        pw[i + 1] += one * pw[i] * (i + 1) / (depth + 1)
        pw[i] = zero * pw[i] * (depth - i) / (depth + 1)


@njit(**JIT)
def _unwind(pd, pz, po, pw, depth, k):
    """shap's ``unwind_path``: undo the extension of path element ``k``."""
    one = po[k]
    zero = pz[k]
    nxt = pw[depth]
    for i in range(depth - 1, -1, -1):
        if one != 0:
            tmp = pw[i]
            pw[i] = nxt * (depth + 1) / ((i + 1) * one)
            nxt = tmp - pw[i] * zero * (depth - i) / (depth + 1)
        else:
            pw[i] = (pw[i] * (depth + 1)) / (zero * (depth - i))
    for i in range(k, depth):
        pd[i] = pd[i + 1]
        pz[i] = pz[i + 1]
        po[i] = po[i + 1]


@njit(**JIT)
def _unwound_sum(pz, po, pw, depth, k):
    """shap's ``unwound_path_sum``: the total weight were element ``k`` unwound."""
    one = po[k]
    zero = pz[k]
    nxt = pw[depth]
    total = 0.0
    if one != 0:
        for i in range(depth - 1, -1, -1):
            tmp = nxt / ((i + 1) * one)
            total += tmp
            nxt = pw[i] - tmp * zero * (depth - i)
    else:
        for i in range(depth - 1, -1, -1):
            total += pw[i] / (zero * (depth - i))
    return total * (depth + 1)


@njit(**JIT)
def _tree(x, root, feature, threshold, missing_left, child, value, cover, phi,
          pd, pz, po, pw, stack_node, stack_depth, stack_zero, stack_one, stack_feat, level_of):
    """Add one tree's SHAP values for the row ``x`` to ``phi`` (shap's ``tree_shap`` with no
    condition). Paths: rows of ``pd`` … ``pw`` by recursion level; the stack holds the calls
    still to make (node, path depth, zero and one fractions, feature of the split above, the
    recursion level)."""
    stack_node[0] = root
    stack_depth[0] = 0
    stack_zero[0] = 1.0
    stack_one[0] = 1.0
    stack_feat[0] = -1
    level_of[0] = 0
    top = 1
    while top > 0:
        top -= 1
        node = stack_node[top]
        depth = stack_depth[top]
        level = level_of[top]
        if level > 0:           # the path the parent left (after its unwind), then extended
            for i in range(depth):
                pd[level, i] = pd[level - 1, i]
                pz[level, i] = pz[level - 1, i]
                po[level, i] = po[level - 1, i]
                pw[level, i] = pw[level - 1, i]
        _extend(pd[level], pz[level], po[level], pw[level], depth, stack_zero[top],
                stack_one[top], stack_feat[top])
        left = child[node]
        if left == node:        # a leaf
            for i in range(1, depth + 1):
                w = _unwound_sum(pz[level], po[level], pw[level], depth, i)
                scale = w * (po[level, i] - pz[level, i]) * 1.0
                phi[pd[level, i]] += scale * value[node]
            continue
        split = feature[node]
        v = x[split]
        if v != v:
            hot = left if missing_left[node] != 0 else left + 1
        elif v <= threshold[node]:
            hot = left
        else:
            hot = left + 1
        cold = left + 1 if hot == left else left
        w = cover[node]
        hot_zero = cover[hot] / w
        cold_zero = cover[cold] / w
        iz = 1.0
        io = 1.0
        k = 0
        while k <= depth:
            if pd[level, k] == split:
                break
            k += 1
        if k != depth + 1:
            iz = pz[level, k]
            io = po[level, k]
            _unwind(pd[level], pz[level], po[level], pw[level], depth, k)
            depth -= 1
        # the cold child is pushed first: the hot one (and its subtree) is visited first
        stack_node[top] = cold
        stack_zero[top] = cold_zero * iz
        stack_one[top] = 0.0
        stack_node[top + 1] = hot
        stack_zero[top + 1] = hot_zero * iz
        stack_one[top + 1] = io
        for j in (top, top + 1):
            stack_depth[j] = depth + 1
            stack_feat[j] = split
            level_of[j] = level + 1
        top += 2


@njit(**JIT_PARALLEL)
def _shap_values(X, feature, threshold, missing_left, child, value, cover, roots, depth, out):
    n, n_features = X.shape
    levels = 0
    for t in range(roots.size):
        levels = max(levels, depth[t])
    levels += 2
    for i in prange(n):
        pd = np.empty((levels, levels + 1), np.int64)
        pz = np.empty((levels, levels + 1))
        po = np.empty((levels, levels + 1))
        pw = np.empty((levels, levels + 1))
        cap = 2 * levels + 2
        stack_node = np.empty(cap, np.int64)
        stack_depth = np.empty(cap, np.int64)
        stack_zero = np.empty(cap)
        stack_one = np.empty(cap)
        stack_feat = np.empty(cap, np.int64)
        level_of = np.empty(cap, np.int64)
        phi = np.zeros(n_features)
        x = X[i]
        for t in range(roots.size):
            _tree(x, roots[t], feature, threshold, missing_left, child, value, cover, phi,
                  pd, pz, po, pw, stack_node, stack_depth, stack_zero, stack_one, stack_feat,
                  level_of)
        for f in range(n_features):
            out[i, f] = phi[f]


def shap_values(forest, X: np.ndarray) -> np.ndarray:
    """SHAP values (rows × features, log-odds) of ``forest`` (:class:`engine.risk.trees.Forest`
    with its ``cover``) on ``X`` (float64, NaN missing): ``shap.TreeExplainer``'s for the
    gradient-boosting model the forest was flattened from."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    if forest.cover is None:
        raise ValueError("this forest was flattened without its node weights")
    if forest.baseline.size != 1:
        raise ValueError("SHAP values of a forest with several trees an iteration (one per "
                         "class) are not computed here: use shap")
    out = np.zeros((X.shape[0], forest.n_features))
    if X.shape[0]:
        _shap_values(X, forest.feature.astype(np.int64), forest.threshold,
                     forest.missing_left, forest.child.astype(np.int64), forest.value,
                     forest.cover, forest.roots.astype(np.int64), forest.depth, out)
    return out
