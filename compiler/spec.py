"""pydantic models of the spec language: top level, blocks, nodes and the train section.

Layers are validated node by node during expansion (an op's attributes need the op's own model,
and may contain expressions); everything else is validated here, up front.
"""
from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RESERVED = ("op", "use", "call", "name", "in", "repeat", "when", "init")
ScalarOrExpr = Union[int, float, bool, str, list, None]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputSpec(Strict):
    shape: list[Union[int, str]]
    dtype: Literal["float32", "int64", "bool"] = "float32"


class BlockSpec(Strict):
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: list[str] = Field(default_factory=lambda: ["x"])
    layers: list[Any]
    outputs: Union[list[str], dict[str, str], None] = None
    description: str = ""

    @field_validator("inputs", mode="before")
    @classmethod
    def _one_input(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class Optimizer(Strict):
    type: Literal["sgd", "adam", "adamw"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    dampening: float = 0.0


class Schedule(Strict):
    type: Literal["none", "step", "cosine", "plateau"] = "none"
    step_size: int = 10
    gamma: float = 0.1
    t_max: int | None = None              # cosine: epochs of one half period (default: all epochs)
    eta_min: float = 0.0
    factor: float = 0.1                   # plateau
    patience: int = 10
    min_lr: float = 0.0
    monitor: str = "val.loss"


class GradClip(Strict):
    max_norm: float | None = None
    value: float | None = None

    @model_validator(mode="after")
    def _one(self) -> "GradClip":
        if (self.max_norm is None) == (self.value is None):
            raise ValueError("grad_clip takes exactly one of max_norm or value")
        return self


class EarlyStopping(Strict):
    monitor: str = "val.loss"
    patience: int = 5
    restore_best: bool = True
    min_delta: float = 0.0
    mode: Literal["auto", "min", "max"] = "auto"


class Augment(Strict):
    input: str
    ops: list[Any]


class Data(Strict):
    train: str | None = None
    val: Union[float, str, None] = None
    test: Union[float, str, None] = None


class Phase(Strict):
    objective: Union[str, dict[str, float]]
    update: list[str]
    steps: int = 1
    optimizer: Optimizer | None = None


Metric = Literal["accuracy", "precision", "recall", "f1", "confusion_matrix", "token_accuracy", "sequence_accuracy",
                 "mae", "rmse", "r2"]


class Train(Strict):
    objective: Union[str, dict[str, float], None] = None
    optimizer: Optimizer = Field(default_factory=Optimizer)
    schedule: Schedule = Field(default_factory=Schedule)
    batch_size: int = Field(32, ge=1)
    epochs: int = Field(10, ge=0)
    seed: int = 0
    grad_clip: GradClip | None = None
    early_stopping: EarlyStopping | None = None
    freeze: list[str] = Field(default_factory=list)
    lr_scale: dict[str, float] = Field(default_factory=dict)
    predict: str | None = None
    target: str | None = None
    metrics: list[Metric] = Field(default_factory=list)
    mask: dict[Literal["train", "val", "test"], str] = Field(default_factory=dict)   # split -> mask input for metrics
    augment: Augment | None = None
    data: Data = Field(default_factory=Data)
    phases: list[Phase] | None = None
    noise: dict[str, Literal["normal", "uniform"]] = Field(default_factory=dict)   # inputs drawn per batch

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule_str(cls, v: Any) -> Any:
        return {"type": v} if isinstance(v, str) else v

    @field_validator("optimizer", mode="before")
    @classmethod
    def _optimizer_str(cls, v: Any) -> Any:
        return {"type": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _objective_or_phases(self) -> "Train":
        if self.objective is not None and self.phases:
            raise ValueError("give either objective or phases, not both (phases replace the objective)")
        return self


class Spec(Strict):
    specc: Literal[1] = 1
    name: str = "model"
    description: str = ""
    imports: dict[str, str] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, Any]
    blocks: dict[str, BlockSpec] = Field(default_factory=dict)
    layers: list[Any]
    outputs: Union[list[str], dict[str, str], None] = None
    train: Any = None                     # validated on its own (Train), so its errors don't hide the layers'


class Library(Strict):
    """An imported file: only its blocks (and its own imports) are used."""

    specc: Literal[1] = 1
    name: str = ""
    description: str = ""
    imports: dict[str, str] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, Any] = Field(default_factory=dict)
    blocks: dict[str, BlockSpec] = Field(default_factory=dict)
    layers: list[Any] = Field(default_factory=list)
    outputs: Union[list[str], dict[str, str], None] = None
    train: Any = None
