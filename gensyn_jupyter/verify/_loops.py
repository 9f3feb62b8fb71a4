"""The data position of a run: every ``for`` loop of the cell counts what it consumed.

The cell is compiled with each ``for x in IT:`` rewritten to ``for x in
__gensyn_loop__(__gensyn_enter__(ID), IT):`` (in functions and classes of the
cell too, not in generator functions: their loops run inside the ``next()`` of
the loop that consumes them), where ID numbers the loops in source order. ``__gensyn_enter__`` runs
before ``IT`` is evaluated, so it can put back the random state an
``iter()`` draws from (a shuffling DataLoader draws its seed there).

The position is the stack of live loops, outermost first; for each: its ID,
which entry it is (entries of that loop since the enclosing loop's current
item began, or since the cell began), how many items it has handed out, and
replay hints: the random state at its entry and at the start of its current
item. Hints are taken only where a replay can need them: at the entry of
loops that ever ran a step (and at every loop's first entry), and per item
for loops that held another live loop at a step (epoch loops).

A replay fast-forwards: a loop on the path to the target position skips the
items consumed before it (a single-process map-style DataLoader advances its
sampler without loading them; anything else is iterated and discarded), a
loop off the path is left without running its body, and when the innermost
loop of the path reaches its position, the run's state is restored.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import CodeType
from typing import Any

__all__ = [
    "ENTER_NAME",
    "LOOP_NAME",
    "TRACKER_FILE",
    "FastForwardError",
    "LoopTracker",
    "instrument",
]

ENTER_NAME = "__gensyn_enter__"
LOOP_NAME = "__gensyn_loop__"
TRACKER_FILE = __file__
"""Frames of this file sit between a cell's ``for`` and its iterable: tracebacks hide them."""


class FastForwardError(BaseException):
    """The replay could not reach the checkpoint's position (replay from the start instead).

    A ``BaseException`` so that the cell's own ``except Exception`` cannot swallow it.
    """


class _Rewriter(ast.NodeTransformer):
    def __init__(self) -> None:
        self.count = 0
        self._in_generator = [False]

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> ast.AST:
        self._in_generator.append(_is_generator(node))
        try:
            self.generic_visit(node)
        finally:
            self._in_generator.pop()
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        return self._function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        return self._function(node)

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        return self._function(node)

    def visit_For(self, node: ast.For) -> ast.AST:
        if self._in_generator[-1]:
            # A generator's loop runs inside the ``next()`` of the loop that consumes it:
            # left untracked, it is fast-forwarded with its consumer.
            self.generic_visit(node)
            return node
        loop_id = self.count
        self.count += 1
        self.generic_visit(node)
        it = node.iter
        enter = ast.Call(ast.Name(ENTER_NAME, ast.Load()), [ast.Constant(loop_id)], [])
        call = ast.Call(ast.Name(LOOP_NAME, ast.Load()), [ast.copy_location(enter, it), it], [])
        node.iter = ast.copy_location(call, it)
        return node


def _is_generator(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> bool:
    """True when the function's own body (not a nested one) yields."""
    stack: list[ast.AST] = list(ast.iter_child_nodes(node))
    while stack:
        current = stack.pop()
        if isinstance(current, ast.Yield | ast.YieldFrom):
            return True
        if isinstance(current, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        stack.extend(ast.iter_child_nodes(current))
    return False


def instrument(source: str, filename: str) -> tuple[CodeType, int]:
    """Compile ``source`` with its ``for`` loops tracked; the code and the number of loops.

    Line numbers are the source's, so tracebacks still point at the cell.
    """
    tree = ast.parse(source, filename=filename, mode="exec")
    rewriter = _Rewriter()
    tree = rewriter.visit(tree)
    ast.fix_missing_locations(tree)
    return compile(tree, filename, "exec"), rewriter.count


@dataclass
class _Frame:
    loop_id: int
    entry: int
    consumed: int = 0
    entry_rng: Any = None
    item_rng: Any = None
    children: dict[int, int] = field(default_factory=dict)
    live: bool = True
    path: int | None = None  # replay: index of this frame in the target position
    off_path: bool = False  # replay: a loop the fast-forward leaves at once
    skipped: bool = False  # replay: its consumed items are skipped

    def tree(self) -> dict[str, Any]:
        return {
            "loop": self.loop_id,
            "entry": self.entry,
            "consumed": self.consumed,
            "entry_rng": self.entry_rng,
            "item_rng": self.item_rng,
            "children": {str(k): v for k, v in sorted(self.children.items())},
        }


class _LoopIter:
    """What the ``for`` statement iterates: counts items; its loss (``break``) closes the frame."""

    __slots__ = ("_frame", "_it", "_tracker")

    def __init__(self, tracker: LoopTracker, frame: _Frame, it: Iterator[Any]) -> None:
        self._tracker = tracker
        self._frame = frame
        self._it = it

    def __iter__(self) -> _LoopIter:
        return self

    def __next__(self) -> Any:
        return self._tracker._next(self._frame, self._it)

    def __del__(self) -> None:
        self._tracker._close(self._frame)


class LoopTracker:
    """The loop stack of one run, and its fast-forward to a target position."""

    def __init__(self, *, capture_rng: Callable[[], Any], restore_rng: Callable[[Any], None]):
        self.capture_rng = capture_rng
        self.restore_rng = restore_rng
        self.before_next: Callable[[], None] | None = None
        self.stack: list[_Frame] = []
        self.root_children: dict[int, int] = {}
        self.carrying: set[int] = set()  # loops that were live at a step
        self.outer: set[int] = set()  # loops that held another live loop at a step
        self.entered: set[int] = set()  # loops whose first entry has ended
        self._target: list[Mapping[str, Any]] | None = None
        self._matched = 0
        self._skipping = False
        self._on_arrival: Callable[[], None] | None = None
        self.failure: str | None = None
        """Why a fast-forward cannot reach its position (set where raising is impossible)."""

    # -- the names the instrumented cell calls --------------------------------
    def enter(self, loop_id: int) -> _Frame:
        parent = self.stack[-1] if self.stack else None
        counts = parent.children if parent is not None else self.root_children
        entry = counts.get(loop_id, 0)
        counts[loop_id] = entry + 1
        frame = _Frame(loop_id, entry)
        if self._target is not None:
            self._enter_replaying(frame)
        elif loop_id in self.carrying or loop_id not in self.entered:
            frame.entry_rng = self.capture_rng()
        return frame

    def loop(self, frame: _Frame, iterable: Iterable[Any]) -> Iterator[Any]:
        if frame.off_path:
            frame.live = False
            self.entered.add(frame.loop_id)
            return iter(())
        it = iter(iterable)
        self.stack.append(frame)
        return _LoopIter(self, frame, it)

    def names(self) -> dict[str, Any]:
        """The names to put into the cell's namespace."""
        return {ENTER_NAME: self.enter, LOOP_NAME: self.loop}

    # -- a step, a position ---------------------------------------------------
    def on_step(self) -> None:
        """A counted optimizer step happened: classify the live loops."""
        stack = self.stack
        for frame in stack:
            self.carrying.add(frame.loop_id)
        for frame in stack[:-1]:
            self.outer.add(frame.loop_id)

    @property
    def depth(self) -> int:
        return len(self.stack)

    def position(self) -> dict[str, Any]:
        """The position as a tree (hashed with the state)."""
        return {
            "frames": [f.tree() for f in self.stack],
            "root_children": {str(k): v for k, v in sorted(self.root_children.items())},
            "carrying": sorted(self.carrying),
            "outer": sorted(self.outer),
            "entered": sorted(self.entered),
        }

    def restore_position(self, position: Mapping[str, Any]) -> None:
        """Take the hints and counters of ``position`` (whose frames are the live ones)."""
        frames = position["frames"]
        if [f["loop"] for f in frames] != [f.loop_id for f in self.stack]:
            raise FastForwardError("the live loops are not the checkpoint's")
        for live, saved in zip(self.stack, frames, strict=True):
            live.consumed = int(saved["consumed"])
            live.entry_rng = saved["entry_rng"]
            live.item_rng = saved["item_rng"]
            live.children = {int(k): int(v) for k, v in saved["children"].items()}
        self.root_children = {int(k): int(v) for k, v in position["root_children"].items()}
        self.carrying = {int(x) for x in position["carrying"]}
        self.outer = {int(x) for x in position["outer"]}
        self.entered = {int(x) for x in position["entered"]}

    def fast_forward(self, position: Mapping[str, Any], on_arrival: Callable[[], None]) -> None:
        """Replay: skip to ``position``, then call ``on_arrival`` (which restores the state)."""
        frames = list(position["frames"])
        if not frames:
            raise ValueError("an empty position is the start: nothing to fast-forward")
        self._target = frames
        self._matched = 0
        self._on_arrival = on_arrival

    @property
    def fast_forwarding(self) -> bool:
        return self._target is not None

    # -- internals ------------------------------------------------------------
    def _enter_replaying(self, frame: _Frame) -> None:
        target = self._target
        assert target is not None
        if self.failure is not None:
            raise FastForwardError(self.failure)
        if self._skipping:
            raise FastForwardError("a loop was entered while the replay skipped items")
        depth = len(self.stack)
        goal = target[depth] if depth < len(target) else None
        if (
            goal is not None
            and depth == self._matched
            and int(goal["loop"]) == frame.loop_id
            and int(goal["entry"]) == frame.entry
        ):
            frame.path = depth
            self._matched = depth + 1
            if goal["entry_rng"] is not None:
                self.restore_rng(goal["entry_rng"])
        else:
            frame.off_path = True

    def _next(self, frame: _Frame, it: Iterator[Any]) -> Any:
        if not frame.live:
            raise StopIteration
        if self.failure is not None and self._target is not None:
            raise FastForwardError(self.failure)
        if frame.path is not None and self._target is not None:
            self._skip_to_target(frame, it)
        if self._target is None:
            if self.before_next is not None:
                self.before_next()
            if frame.loop_id in self.outer:
                frame.item_rng = self.capture_rng()
        try:
            item = next(it)
        except StopIteration:
            self._close(frame)
            raise
        frame.consumed += 1
        if frame.children:
            frame.children = {}
        return item

    def _skip_to_target(self, frame: _Frame, it: Iterator[Any]) -> None:
        target = self._target
        assert target is not None and frame.path is not None
        goal = target[frame.path]
        last = frame.path == len(target) - 1
        if not frame.skipped:
            count = int(goal["consumed"]) - (0 if last else 1)
            self._skipping = True
            try:
                _skip(it, count)
            except StopIteration:
                raise FastForwardError(
                    f"loop {frame.loop_id} ended before its checkpoint position"
                ) from None
            finally:
                self._skipping = False
            frame.consumed = count
            frame.skipped = True
            if last:
                self._target = None
                if self._on_arrival is not None:
                    self._on_arrival()
            elif goal["item_rng"] is not None:
                self.restore_rng(goal["item_rng"])
        elif not last:
            raise FastForwardError(f"loop {frame.loop_id} moved on before the position was reached")

    def _close(self, frame: _Frame) -> None:
        if not frame.live:
            return
        frame.live = False
        self.entered.add(frame.loop_id)
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index] is frame:
                del self.stack[index:]  # loops above it have ended too (or are held elsewhere)
                break
        if frame.path is not None and self._target is not None:
            self.failure = f"loop {frame.loop_id} ended before the checkpoint position"


def _skip(it: Iterator[Any], count: int) -> None:
    """Advance ``it`` by ``count`` items; a plain DataLoader's sampler only, without loading."""
    if count <= 0:
        return
    import torch.utils.data.dataloader as dl

    if isinstance(it, dl._SingleProcessDataLoaderIter) and it._dataset_kind == dl._DatasetKind.Map:
        for _ in range(count):
            it._next_index()  # type: ignore[no-untyped-call]
            it._num_yielded += 1
        return
    for _ in range(count):
        next(it)
