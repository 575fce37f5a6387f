"""The project's import graph, read from the source with ``ast`` (nothing is imported).

    .venv/bin/python -m tests.imports_graph            # circles, upward imports, largest files
    .venv/bin/python -m tests.imports_graph --edges    # also every module -> module edge

An edge is any import of a project module, at the top of a file or inside a function
(``lazy``: a function-level import usually hides a circle). Migrations, tests and
benchmarks are left out.
"""

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIPPED_PARTS = {"migrations", "tests", "bench", ".venv", "node_modules", "var", "__pycache__"}
# The shared kernel, which may import no app.
KERNEL = "core"


def project_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every project package at the top level."""
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if SKIPPED_PARTS & set(relative.parts) or len(relative.parts) < 2:
            continue
        if not (ROOT / relative.parts[0] / "__init__.py").exists():
            continue
        parts = list(relative.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an import of ``name`` loads (the longest known prefix)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, bool]]:
    """(imported project module, lazy) pairs of one file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names] or [base]
        else:
            continue
        lazy = id(node) not in top_level and not _inside_type_checking(tree, node)
        for name in names:
            target = _resolve(name, modules)
            if target and target != module:
                found.append((target, lazy))
    return found


def _inside_type_checking(tree: ast.Module, node: ast.AST) -> bool:
    for statement in tree.body:
        guarded = isinstance(statement, ast.If) and "TYPE_CHECKING" in ast.unparse(statement.test)
        if guarded and any(child is node for child in ast.walk(statement)):
            return True
    return False


def graph() -> dict[str, dict[str, bool]]:
    """module -> {imported module: lazy}; an edge is lazy only if every import is."""
    modules = project_modules()
    edges: dict[str, dict[str, bool]] = defaultdict(dict)
    for module, path in modules.items():
        edges[module]
        for target, lazy in imports_of(module, path, modules):
            edges[module][target] = edges[module].get(target, True) and lazy
    return edges


def circles(edges: dict[str, dict[str, bool]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def package_of(module: str) -> str:
    return module.split(".")[0]


def upward_imports(edges: dict[str, dict[str, bool]]) -> list[tuple[str, str]]:
    """Imports of an app by the shared kernel (core must import no app)."""
    return sorted(
        (module, target)
        for module, targets in edges.items()
        if package_of(module) == KERNEL
        for target in targets
        if package_of(target) not in (KERNEL,)
    )


def package_edges(edges: dict[str, dict[str, bool]]) -> dict[str, set[str]]:
    result: dict[str, set[str]] = defaultdict(set)
    for module, targets in edges.items():
        for target in targets:
            if package_of(target) != package_of(module):
                result[package_of(module)].add(package_of(target))
    return result


def largest_files(count: int = 12) -> list[tuple[int, str]]:
    sizes = [
        (len(path.read_text().splitlines()), str(path.relative_to(ROOT)))
        for path in project_modules().values()
    ]
    return sorted(sizes, reverse=True)[:count]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="print every module edge")
    options = parser.parse_args(argv)
    edges = graph()
    if options.edges:
        print("# module -> module (lazy: imported inside a function)")
        for module in sorted(edges):
            for target in sorted(edges[module]):
                print(f"{module} -> {target}" + ("  (lazy)" if edges[module][target] else ""))
    print("# package -> packages")
    for package, targets in sorted(package_edges(edges).items()):
        print(f"{package} -> {', '.join(sorted(targets))}")
    found = circles(edges)
    print(f"# circles: {len(found)}")
    for component in found:
        print("  " + " <-> ".join(component))
    upward = upward_imports(edges)
    print(f"# upward imports ({KERNEL} -> an app): {len(upward)}")
    for module, target in upward:
        print(f"  {module} -> {target}")
    print("# largest files (lines)")
    for lines, path in largest_files():
        print(f"  {lines:5d} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
