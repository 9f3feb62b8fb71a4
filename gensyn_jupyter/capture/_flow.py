"""Which reads of a cell can see the kernel's values: a conservative flow look at its AST."""

from __future__ import annotations

import ast

__all__ = ["free_reads"]

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def free_reads(source: str) -> frozenset[str]:
    """Names the cell may read before it binds them itself.

    A subset of :attr:`CellAnalysis.loads`: a name the cell assigns (or
    imports, or defines) unconditionally at top level before any statement
    reads it is left out, so a stale value of it in the kernel is never
    captured (``it = iter(loader)`` at the top of a cell that once ran
    locally). Conservative everywhere else: loop and branch bodies see only
    what was bound before them (and what they bind earlier in themselves),
    a ``def``/``class`` reads everything in its body at definition time.
    """
    return frozenset(_free_in(ast.parse(source, filename="<cell>").body, set()))


def _reads(node: ast.AST | None) -> set[str]:
    if node is None:
        return set()
    found: set[str] = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Load | ast.Del):
            found.add(child.id)
        elif isinstance(child, ast.AugAssign) and isinstance(child.target, ast.Name):
            found.add(child.target.id)
    return found


def _target_names(node: ast.AST | None) -> set[str]:
    """Names an assignment target binds (``a``, ``a, (b, *c)``; not ``a.x`` or ``a[0]``)."""
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, ast.Tuple | ast.List):
        return set().union(*(_target_names(e) for e in node.elts)) if node.elts else set()
    if isinstance(node, ast.Starred):
        return _target_names(node.value)
    return set()


def _definite_bindings(stmt: ast.stmt) -> set[str]:
    """Names a simple statement surely binds once it completes."""
    if isinstance(stmt, ast.Assign):
        return set().union(*(_target_names(t) for t in stmt.targets))
    if isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
        return _target_names(stmt.target)
    if isinstance(stmt, ast.AugAssign):
        return _target_names(stmt.target)
    if isinstance(stmt, ast.Import):
        return {(a.asname or a.name.split(".")[0]) for a in stmt.names}
    if isinstance(stmt, ast.ImportFrom):
        return {(a.asname or a.name) for a in stmt.names if a.name != "*"}
    return set()


def _free_in(body: list[ast.stmt], bound: set[str]) -> set[str]:
    """Reads in ``body`` not preceded by a sure binding; updates ``bound`` in place."""
    free: set[str] = set()
    for stmt in body:
        if isinstance(stmt, ast.For | ast.AsyncFor):
            free |= _reads(stmt.iter) - bound
            free |= _free_in(stmt.body, bound | _target_names(stmt.target))
            free |= _free_in(stmt.orelse, set(bound))
        elif isinstance(stmt, ast.While):
            free |= _reads(stmt.test) - bound
            free |= _free_in(stmt.body, set(bound))
            free |= _free_in(stmt.orelse, set(bound))
        elif isinstance(stmt, ast.If):
            free |= _reads(stmt.test) - bound
            then, other = set(bound), set(bound)
            free |= _free_in(stmt.body, then) | _free_in(stmt.orelse, other)
            bound |= then & other
        elif isinstance(stmt, ast.With | ast.AsyncWith):
            for item in stmt.items:
                free |= _reads(item.context_expr) - bound
                bound |= _target_names(item.optional_vars)
            free |= _free_in(stmt.body, bound)
        elif isinstance(stmt, ast.Try | ast.TryStar):
            free |= _free_in(stmt.body, set(bound))
            for handler in stmt.handlers:
                free |= _reads(handler.type) - bound
                caught = bound | ({handler.name} if handler.name else set())
                free |= _free_in(handler.body, caught)
            free |= _free_in(stmt.orelse, set(bound)) | _free_in(stmt.finalbody, set(bound))
        elif isinstance(stmt, ast.Match):
            free |= _reads(stmt.subject) - bound
            for case in stmt.cases:
                free |= (_reads(case.pattern) | _reads(case.guard)) - bound
                captures = {
                    n.name for n in ast.walk(case.pattern) if isinstance(n, ast.MatchAs) and n.name
                }
                free |= _free_in(case.body, bound | captures)
        elif isinstance(stmt, (*_FUNCTIONS, ast.ClassDef)):
            free |= _reads(stmt) - bound
            bound.add(stmt.name)
        else:
            free |= _reads(stmt) - bound
            if isinstance(stmt, ast.Delete):
                bound -= set().union(*(_target_names(t) for t in stmt.targets))
            bound |= _definite_bindings(stmt)
    return free
