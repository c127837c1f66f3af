"""How the suite is spread over processes (pytest-xdist, ``-n auto --dist loadgroup`` in
``pyproject.toml``).

Each test is its own unit of work, handed to whichever worker is free, except the tests of a
module (or class) that shares a module- or class-scoped fixture: those run together on one
worker, so the fixture is computed once. The longest tests are handed out first, one to each
worker, so that neither is left running alone at the end. Without xdist (``-p no:xdist`` or
``-n 0``) the suite runs as before, in this order.
"""
from __future__ import annotations

import os

import pytest

#: the longest tests (each more than a minute on a 2-core machine), started first
FIRST = (
    "tests/test_spark.py::",
    "tests/test_store_kill.py::",
    "tests/test_detectors_framework.py::test_kernels_are_cached_outside_the_package",
)


def _shares_a_fixture(item: pytest.Item) -> str | None:
    """The module (or class) whose own module- or class-scoped fixture the test uses."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:                       # doctests and other non-function items
        return None
    for defs in info.name2fixturedefs.values():
        d = defs[-1]
        if d.scope in ("module", "class") and d.baseid.startswith("tests"):
            return item.nodeid.split("::")[0]
    return None


@pytest.hookimpl(tryfirst=True)           # before xdist reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        group = _shares_a_fixture(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))

    def rank(item):
        for i, prefix in enumerate(FIRST):
            if item.nodeid.startswith(prefix):
                return i
        return len(FIRST)

    items.sort(key=rank)                  # stable: every other test keeps its place


# ------------------------------------------------------------------------------------------
# a worker's environment is the controller's
# ------------------------------------------------------------------------------------------
# An xdist worker finds COLUMNS=80 in its environment where the command that started pytest had
# none; the command line's tables then keep that width whatever COLUMNS a test gives CliRunner.
@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    node.workerinput["columns"] = os.environ.get("COLUMNS")


@pytest.fixture(autouse=True)
def _columns_as_in_the_controller(request, monkeypatch):
    workerinput = getattr(request.config, "workerinput", None)
    if workerinput is not None:
        if workerinput["columns"] is None:
            monkeypatch.delenv("COLUMNS", raising=False)
        else:
            monkeypatch.setenv("COLUMNS", workerinput["columns"])
