"""The package's shape: no import cycle between engine's modules (imports inside functions —
deliberate late imports — aside), and no code citing documents outside the repository."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "engine"


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Modules of engine imported at module level (TYPE_CHECKING blocks included)."""
    mod = _module(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    out = set()
    for node in tree.body + [n for t in tree.body if isinstance(t, ast.If) for n in t.body]:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("engine"):
                continue
            for alias in node.names:       # "from . import x" imports the module x
                sub = f"{target}.{alias.name}"
                out.add(sub if (ENGINE.parent / (sub.replace(".", "/") + ".py")).exists()
                        or (ENGINE.parent / sub.replace(".", "/")).is_dir() else target)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("engine")}
    return out


def test_no_import_cycle():
    graph = {_module(p): _imports(p) for p in ENGINE.rglob("*.py")}
    # a package's __init__ importing its own modules is not a cycle through them
    for mod, deps in graph.items():
        graph[mod] = {d for d in deps if d != mod and not mod.startswith(d + ".")}
    state, cycles = {}, []

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt in graph and not state.get(nxt):
                visit(nxt, path + [nxt])
        state[node] = 2

    for mod in sorted(graph):
        if not state.get(mod):
            visit(mod, [mod])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_citation_of_documents_outside_the_repository():
    names = ("DESIGN" + ".md", "STYLE" + ".md", "CLINICAL" + ".md", "ROADMAP" + ".md")
    hits = [f"{p.relative_to(ROOT)}: {n}" for p in [*ENGINE.rglob("*.py"),
                                                     *ROOT.glob("rules/**/*.yaml"),
                                                     *ROOT.glob("*.md"), *ROOT.glob("docs/*.md")]
            for n in names if n in p.read_text(encoding="utf-8")]
    assert not hits, hits
