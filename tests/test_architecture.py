"""The import rules of ../shared/DESIGN.md ("The layout, and the imports that must never exist").

Every ``import`` in src/rostergate counts, function-local ones included (a local
import hides a cycle; it does not remove it). ``if TYPE_CHECKING:`` blocks are
ignored: they never run. Imports are eager: only the CLI imports inside its
commands (``LAZY_IMPORTS``), so that ``--help`` or ``accounts list`` does not load
pandas and pyarrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "rostergate"

# (importer prefix, imported prefixes it must never reach), as DESIGN.md states them.
FORBIDDEN: list[tuple[str, tuple[str, ...]]] = [
    ("rostergate.formats", ("rostergate.sftp", "rostergate.intake", "rostergate.runs", "rostergate.forward",
                            "rostergate.history", "rostergate.store", "rostergate.accounts", "rostergate.cli",
                            "rostergate.daemon", "rostergate.watch", "rostergate.config")),
    ("rostergate.sftp", ("rostergate.formats", "rostergate.runs", "rostergate.forward", "rostergate.intake")),
    ("rostergate.history", ("rostergate.runs", "rostergate.sftp")),
    ("rostergate.store", ("rostergate.runs", "rostergate.sftp")),
    ("rostergate.intake", ("rostergate.sftp",)),
    ("rostergate.runstatus", ("rostergate",)),  # a leaf, so that history may store RunStatus
]


# Modules allowed to import inside functions, and why.
LAZY_IMPORTS = {"rostergate.cli": "each command loads only what it needs: the CLI starts in a fraction of a second"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, module: str) -> set[str]:
    """Every rostergate module ``module`` imports, wherever the import statement stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith(PACKAGE))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith(PACKAGE):
                continue
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    return {name: {t for t in _imports(path, name) if t in modules and t != name} for name, path in modules.items()}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def forbidden_imports(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    found = set()
    for importer, targets in graph.items():
        for prefix, banned in FORBIDDEN:
            if _within(importer, prefix):
                found.update((importer, t) for t in targets if any(_within(t, b) for b in banned))
        if not _within(importer, "rostergate.cli") and importer != "rostergate.__main__":
            found.update((importer, t) for t in targets if _within(t, "rostergate.cli"))
    return found


def test_no_forbidden_import() -> None:
    assert sorted(forbidden_imports(import_graph())) == []


def test_every_rule_names_modules_that_exist() -> None:
    """A rule about a module that was renamed or moved would pass for ever: each prefix must name one."""
    modules = set(import_graph())
    prefixes = {prefix for importer, banned in FORBIDDEN for prefix in (importer, *banned)}
    assert sorted(p for p in prefixes if not any(_within(m, p) for m in modules)) == []


def function_local_imports(path: Path) -> list[str]:
    """``line: statement`` of every import inside a function of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [f"{node.lineno}: {ast.unparse(node)}"
            for function in ast.walk(tree) if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(function) if isinstance(node, (ast.Import, ast.ImportFrom))]


def test_imports_are_eager_outside_the_cli() -> None:
    found = {name: local for name, path in sorted((_module_name(p), p) for p in SRC.rglob("*.py"))
             if name not in LAZY_IMPORTS and (local := function_local_imports(path))}
    assert found == {}


def test_no_import_cycle() -> None:
    assert _cycles(import_graph()) == []


def test_the_checker_sees_local_imports_and_cycles(tmp_path: Path) -> None:
    """The rules above can fail: a cycle through a function-local import is found."""
    graph = {"rostergate.a": {"rostergate.b"}, "rostergate.b": {"rostergate.a"}, "rostergate.c": set()}
    assert _cycles(graph) == [["rostergate.a", "rostergate.b"]]
    module = tmp_path / "mod.py"
    module.write_text("def f():\n    from rostergate.cli import main\n")
    assert _imports(module, "rostergate.x") >= {"rostergate.cli", "rostergate.cli.main"}
    assert forbidden_imports({"rostergate.formats.x": {"rostergate.history"}}) == {
        ("rostergate.formats.x", "rostergate.history")}
    assert function_local_imports(module) == ["2: from rostergate.cli import main"]
