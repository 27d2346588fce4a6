"""The dependency rules of docs/ARCHITECTURE.md, checked on every import in the source
(function-level imports included), so the graph stays what the document says."""

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "prunekit"

# package → the prunekit packages it may import (besides itself); "prunekit" is the
# top-level module (its __version__).
ALLOWED = {
    "errors": set(),
    "utils": {"errors"},
    "models": {"errors", "utils"},
    "data": {"errors", "utils"},
    "masks": {"errors", "utils"},
    "second_order": {"errors", "utils"},
    "checkpoints": {"errors", "utils", "masks", "models"},
    "training": {"errors", "utils", "masks", "models", "data"},
    "methods": {"errors", "utils", "masks"},
    "methods.init": {"errors", "utils", "masks", "methods"},
    "methods.oneshot": {
        "errors",
        "utils",
        "masks",
        "data",
        "second_order",
        "methods",
        "methods.init",
    },
    "deploy": {"errors", "utils", "masks", "models", "checkpoints", "data"},
    "reports": {"errors", "utils"},
    "pipelines": {
        "prunekit",
        "errors",
        "utils",
        "masks",
        "models",
        "data",
        "training",
        "checkpoints",
        "second_order",
        "methods",
        "methods.init",
        "methods.oneshot",
        "reports",
        "deploy",
    },
    "cli": {"prunekit", "errors", "utils", "pipelines", "models", "data"},
    "__main__": {"cli"},
}


def package_of(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    if len(parts) == 1:
        return "prunekit" if parts[0] == "__init__" else parts[0]
    if parts[0] == "methods" and len(parts) > 2:
        return f"methods.{parts[1]}"
    return parts[0]


def package_of_module(module: str) -> str:
    parts = module.split(".")[1:]
    if not parts:
        return "prunekit"
    if parts[0] == "methods" and len(parts) > 1 and parts[1] in ("init", "oneshot"):
        return f"methods.{parts[1]}"
    return parts[0]


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("prunekit"):
            found.add(package_of_module(node.module))
        elif isinstance(node, ast.Import):
            found |= {
                package_of_module(a.name) for a in node.names if a.name.startswith("prunekit")
            }
    return found


def test_every_import_follows_the_architecture():
    violations = []
    for path in sorted(SOURCE.rglob("*.py")):
        package = package_of(path)
        if package == "prunekit":
            continue
        assert package in ALLOWED, f"{path}: package {package!r} has no rule; add one"
        for target in imports_of(path) - {package}:
            if target not in ALLOWED[package]:
                violations.append(f"{path.relative_to(SOURCE)} imports {target}")
    assert not violations, "\n".join(violations)


def test_the_rules_forbid_cycles():
    def reaches(start, goal, seen=()):
        return any(
            t == goal or (t not in seen and t in ALLOWED and reaches(t, goal, (*seen, t)))
            for t in ALLOWED[start]
        )

    assert not [p for p in ALLOWED if reaches(p, p)]
