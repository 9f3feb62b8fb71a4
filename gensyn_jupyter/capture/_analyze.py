"""Which names a cell reads and binds: a static look at its AST, nothing is run."""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["CellAnalysis", "analyze_cell"]

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


@dataclass(frozen=True)
class CellAnalysis:
    """The names a cell reads and binds.

    Attributes
    ----------
    loads : frozenset of str
        Every name the cell reads anywhere, nested functions, lambdas, classes
        and comprehensions included (an over-approximation: a name that is only
        a parameter of a nested function still counts). ``x += 1`` and
        ``del x`` read ``x``; ``a.b.c`` and ``a[0] = 1`` read ``a``.
    stores : frozenset of str
        The names the cell binds in its own (module) scope: assignment targets,
        ``for``/``with``/``except ... as``/walrus/``match`` captures, imports,
        ``def`` and ``class`` names, and names a nested function declares
        ``global`` and assigns. Names bound only inside nested functions,
        classes or comprehensions are not included.
    imports : Mapping of str to str
        Name bound by an import statement -> the module it refers to.
        ``import numpy as np`` gives ``{"np": "numpy"}``; ``import os.path``
        binds ``os`` and gives ``{"os": "os"}``. ``from torch import nn`` gives
        ``{"nn": "torch.nn"}`` when ``torch.nn`` is a module (looked up without
        importing anything) and the module imported from otherwise
        (``from math import pi`` gives ``{"pi": "math"}``). Relative imports
        keep their dots (``{"x": ".pkg"}``); ``import *`` binds nothing known.
    """

    loads: frozenset[str]
    stores: frozenset[str]
    imports: Mapping[str, str] = field(
        default_factory=lambda: types.MappingProxyType({}), hash=False
    )


def analyze_cell(source: str) -> CellAnalysis:
    """Find the names ``source`` reads and binds.

    Parameters
    ----------
    source : str
        The cell body (Python, without the magic line).

    Returns
    -------
    CellAnalysis
        Loads, stores and imports of the cell.

    Raises
    ------
    SyntaxError
        When ``source`` does not parse; ``lineno`` counts from the first line
        of ``source``.
    """
    tree = ast.parse(source, filename="<cell>", mode="exec")
    loads: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load | ast.Del):
            loads.add(node.id)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            loads.add(node.target.id)
    scope = _TopScope()
    for stmt in tree.body:
        scope.visit(stmt)
    return CellAnalysis(
        loads=frozenset(loads),
        stores=frozenset(scope.stores),
        imports=types.MappingProxyType(dict(scope.imports)),
    )


class _TopScope(ast.NodeVisitor):
    """Collects the names bound in the cell's own scope."""

    def __init__(self) -> None:
        self.stores: set[str] = set()
        self.imports: dict[str, str] = {}

    # -- plain bindings -------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store):
            self.stores.add(node.id)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.visit(node.annotation)
        if node.value is None:
            # ``x: int`` declares, it does not bind; ``a.b: int`` still reads ``a``.
            if not isinstance(node.target, ast.Name):
                self.visit(node.target)
            return
        self.visit(node.target)
        self.visit(node.value)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self.stores.add(node.name)
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.name:
            self.stores.add(node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self.stores.add(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self.stores.add(node.rest)
        self.generic_visit(node)

    # -- imports ----------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self._bind_import(alias.asname, alias.name)
            else:
                top = alias.name.split(".")[0]
                self._bind_import(top, top)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = "." * node.level + (node.module or "")
        for alias in node.names:
            if alias.name == "*":
                continue
            self._bind_import(alias.asname or alias.name, _from_target(base, alias.name))

    def _bind_import(self, name: str, module: str) -> None:
        self.stores.add(name)
        self.imports[name] = module

    # -- nested scopes: only what is evaluated in the cell's scope ----------
    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.stores.add(node.name)
        for deco in node.decorator_list:
            self.visit(deco)
        self._visit_arguments(node.args, annotations=True)
        if node.returns is not None:
            self.visit(node.returns)
        self.stores |= _global_stores(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._visit_function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._visit_function(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._visit_arguments(node.args, annotations=False)

    def _visit_arguments(self, args: ast.arguments, *, annotations: bool) -> None:
        for default in [*args.defaults, *args.kw_defaults]:
            if default is not None:
                self.visit(default)
        if annotations:
            for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                if arg is not None and arg.annotation is not None:
                    self.visit(arg.annotation)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.stores.add(node.name)
        for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expr)
        self.stores |= _global_stores(node)

    def _visit_comprehension(
        self, node: ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp
    ) -> None:
        # The first iterable is evaluated in the cell's scope; the rest is the
        # comprehension's own scope, except walrus targets, which bind outside.
        self.visit(node.generators[0].iter)
        self.stores |= _walrus_targets(node)

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self._visit_comprehension(node)

    def visit_SetComp(self, node: ast.SetComp) -> None:
        self._visit_comprehension(node)

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._visit_comprehension(node)

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> None:
        self._visit_comprehension(node)


def _walrus_targets(node: ast.AST) -> set[str]:
    """Walrus targets inside a comprehension (they bind in the enclosing scope)."""
    found: set[str] = set()
    stack: list[ast.AST] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, ast.NamedExpr) and isinstance(current.target, ast.Name):
            found.add(current.target.id)
        if isinstance(current, ast.Lambda | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        stack.extend(ast.iter_child_nodes(current))
    return found


def _global_stores(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> set[str]:
    """Names a nested body declares ``global`` and binds: they land in the cell's scope."""
    declared: set[str] = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Global):
            declared.update(child.names)
    if not declared:
        return set()
    bound: set[str] = set()
    for child in ast.walk(node):
        if child is node:
            continue
        if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
            bound.add(child.id)
        elif isinstance(child, (*_FUNCTIONS, ast.ClassDef)):
            bound.add(child.name)
        elif isinstance(child, ast.Import | ast.ImportFrom):
            bound.update((a.asname or a.name.split(".")[0]) for a in child.names)
    return bound & declared


def _from_target(module: str, name: str) -> str:
    """``from module import name``: ``module.name`` when that is a module, else ``module``."""
    if module.startswith(".") or not module:
        return module
    full = f"{module}.{name}"
    return full if _is_module(full) else module


def _is_module(dotted: str) -> bool:
    """True when ``dotted`` names an importable module; never imports anything."""
    if isinstance(sys.modules.get(dotted), types.ModuleType):
        return True
    parts = dotted.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])  # top level: looked up, not imported
        for i in range(1, len(parts)):
            if spec is None or spec.submodule_search_locations is None:
                return False
            spec = importlib.machinery.PathFinder.find_spec(
                ".".join(parts[: i + 1]), list(spec.submodule_search_locations)
            )
    except (ImportError, ValueError, AttributeError):
        return False
    return spec is not None
