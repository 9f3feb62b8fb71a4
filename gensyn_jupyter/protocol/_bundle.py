"""What a cell becomes before it leaves the kernel: the bundle and its inputs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ._hashing import SHA256_RE

__all__ = ["Bundle", "Environment", "InputKind", "InputRef", "Sha256"]

Sha256 = Annotated[str, Field(pattern=SHA256_RE.pattern, description="lowercase hex sha256")]

InputKind = Literal["tree", "object", "module"]
"""How an input travels.

``tree``: plain data and tensors (numbers, strings, lists, dicts, tensors, state
dicts): the structure is JSON in ``structure``, the tensors live in the
safetensors blob ``blob``.  ``object``: anything else (modules, optimizers,
datasets, functions and classes defined in the notebook): cloudpickled by
value, all such inputs together in the blob ``blob`` under ``name`` so that
shared references (an optimizer's parameters are the model's) survive.
``module``: an imported module, re-imported by name (``module``).
"""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class InputRef(_Model):
    """One name the cell reads from the kernel namespace."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    kind: InputKind
    type_name: str = Field(description="qualified type of the value, e.g. 'torch.Tensor'")
    blob: Sha256 | None = None
    structure: Any = None
    module: str | None = None
    nbytes: int = Field(default=0, ge=0)


class Environment(_Model):
    """Versions the cell was written against, so a provider can refuse what it cannot run."""

    python: str
    torch: str
    platform: str
    packages: dict[str, str] = Field(default_factory=dict)


class Bundle(_Model):
    """A captured cell: its source, its inputs and the names it may send back."""

    source: str = Field(max_length=1_000_000)
    inputs: list[InputRef] = Field(default_factory=list)
    outputs: list[str] = Field(
        default_factory=list, description="names the cell binds; sent back when they can be"
    )
    returns: list[str] = Field(
        default_factory=list,
        description="captured names sent back when changed (modules, optimizers, tensors, data)",
    )
    environment: Environment
    cell_line_offset: int = Field(
        default=1, ge=0, description="lines above the body in the notebook cell (the magic line)"
    )
    kernel_device: str = Field(default="cpu", description="device the kernel's tensors live on")
    checkpoint_every: int | None = Field(
        default=None,
        ge=0,
        le=1_000_000_000,
        description="optimizer steps between committed checkpoints (``--checkpoint-every``); "
        "None: chosen from the step count (at most 32 checkpoints); 0: no commitment",
    )

    def blobs(self) -> set[str]:
        """Every blob the inputs refer to."""
        return {i.blob for i in self.inputs if i.blob is not None}
