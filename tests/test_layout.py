"""The import rules of DESIGN.md: which part may import which."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gensyn_jupyter"

# part -> parts of ours it must never import
FORBIDDEN = {
    "protocol": {
        "capture",
        "kernel",
        "widgets",
        "server",
        "coordinator",
        "provider",
        "verify",
        "chain",
        "devnet",
        "config",
        "cli",
    },
    "kernel": {"coordinator", "provider", "server", "chain", "devnet"},
    "coordinator": {"kernel", "widgets", "provider", "devnet"},
    "provider": {"kernel", "widgets", "coordinator", "devnet"},
    "capture": {"kernel", "coordinator", "provider", "server", "chain", "devnet"},
    "server": {"kernel", "coordinator", "provider", "widgets", "capture", "devnet"},
    "widgets": {"kernel", "coordinator", "provider", "server", "chain", "devnet"},
    "chain": {"kernel", "widgets", "coordinator", "provider", "server", "capture", "devnet"},
    "verify": {"kernel", "widgets", "coordinator", "provider", "server", "chain", "devnet"},
    "hub": {"kernel", "widgets", "coordinator", "provider", "server", "devnet", "capture"},
}


def _imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    parts = path.relative_to(PACKAGE).parts
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(parts[: len(parts) - node.level])
                target = [*base, *(node.module.split(".") if node.module else [])]
                if target:
                    found.add(target[0])
                elif node.module is None:
                    found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("gensyn_jupyter."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("gensyn_jupyter."):
                    found.add(alias.name.split(".")[1])
    return found


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_part_imports_only_what_design_allows(part: str) -> None:
    offenders = []
    for path in sorted((PACKAGE / part).rglob("*.py")):
        bad = _imports_of(path) & FORBIDDEN[part]
        if bad:
            offenders.append(f"{path.relative_to(PACKAGE)} imports {sorted(bad)}")
    assert not offenders, "\n".join(offenders)


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = PACKAGE / "kernel" / "_probe_forbidden.py"
    bad.write_text("from ..coordinator import create_app\n")
    try:
        assert "coordinator" in _imports_of(bad)
    finally:
        bad.unlink()
