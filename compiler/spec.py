"""pydantic models of the spec language: top level, blocks, nodes and the train section.

Layers are validated node by node during expansion (an op's attributes need the op's own model,
and may contain expressions); everything else is validated here, up front.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

RESERVED = ("op", "use", "call", "name", "in", "repeat", "when", "init")
ScalarOrExpr = Union[int, float, bool, str, list, None]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, v: Any, info: Any) -> Any:
        """`epochs: true` is not 1: a boolean where a number is expected is refused (pydantic's lax mode
        reads True as 1), unless the field takes a boolean too."""
        if isinstance(v, bool) and info.field_name in cls.model_fields:
            text = repr(cls.model_fields[info.field_name].annotation)
            if ("int" in text or "float" in text) and "bool" not in text and "Any" not in text:
                raise ValueError("expected a number, got a boolean")
        return v


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


class CheckpointPolicy(Strict):
    """What best.npz holds: the epoch best on `monitor` (`val.loss`, `train.accuracy`, a term or phase
    name...), or `last`, the last epoch's weights."""
    monitor: str | None = None
    mode: Literal["auto", "min", "max"] = "auto"


LOG_SINKS = ("csv", "jsonl", "tensorboard")


class Log(Strict):
    """Per-step training records (docs/training.md, "Logging"): one every `every` optimiser steps, written to
    DIR/steps.csv, DIR/steps.jsonl and/or TensorBoard event files in DIR/tb/."""
    every: int = Field(10, ge=0)          # 0: no per-step records (tensorboard then gets the epochs only)
    to: list[Literal["csv", "jsonl", "tensorboard"]] = Field(default_factory=lambda: ["csv"])

    @field_validator("to", mode="before")
    @classmethod
    def _one_sink(cls, v: Any) -> Any:
        v = [v] if isinstance(v, str) else v
        if isinstance(v, list) and not v:
            raise ValueError("empty: nothing would be recorded (list csv, jsonl and/or tensorboard, or drop log:)")
        if isinstance(v, list) and len(set(map(str, v))) < len(v):
            raise ValueError("a sink is listed twice")
        return v


class Augment(Strict):
    input: str
    ops: list[Any]


SOURCE_KINDS = ("npz", "npy", "csv", "tsv", "images", "text", "graph")
SOURCE_OPTIONS = {                      # the options each kind of source takes (besides `inputs`)
    "npz": (), "npy": (),
    "csv": ("features", "categorical", "label", "delimiter"),
    "tsv": ("features", "categorical", "label", "delimiter"),
    "images": ("size", "classes"),
    "text": ("task", "window", "vocab_size", "min_count", "max_len", "lowercase", "bos", "eos"),
    "graph": ("nodes", "id", "features", "categorical", "label", "split", "directed"),
}


class Source(Strict):
    """A data source written as a mapping (docs/data.md): one key names the file or folder and its kind
    (npz, npy, csv, tsv, images, text, graph); the others are options of that kind."""

    npz: str | None = None
    npy: str | None = None                # a folder of NAME.npy files, one per input, memory-mapped
    csv: str | None = None
    tsv: str | None = None
    images: str | None = None             # a folder with one sub-folder of images per class
    text: str | None = None               # a .txt corpus (one text per line) or a .tsv of text<TAB>label
    graph: str | None = None              # an edge list (.csv) or a file networkx reads (.graphml, .gml, .edgelist)
    inputs: dict[str, str] = Field(default_factory=dict)   # spec input: field or column it reads
    features: list[str] | None = None     # tables/graphs: numeric columns stacked into the feature vector
    categorical: list[str] = Field(default_factory=list)   # columns of category names, as class indices
    label: str | None = None              # tables/graphs: the label column
    delimiter: str | None = None          # tables: default ',' for csv, tab for tsv
    size: list[int] | None = None         # images: [C, H, W] (default: the spec input's shape)
    classes: list[str] | None = None      # images: class folders in label order (default: sorted names)
    task: Literal["classify", "lines", "skipgram", "cbow"] | None = None
    window: int | None = Field(None, ge=1)        # skipgram/cbow: words each side of the centre
    vocab_size: int | None = Field(None, ge=5)    # most frequent words kept, specials included
    min_count: int = Field(1, ge=1)               # rarer words become <unk>
    max_len: int | None = Field(None, ge=1)       # tokens kept per text (default: the spec's fixed T)
    lowercase: bool = True
    bos: bool = False                     # text: <bos> before / <eos> after every sequence
    eos: bool = False
    nodes: str | None = None              # graphs: the node table (.csv): id, features, label, split
    id: str = "id"                        # graphs: the node table's id column
    split: str | None = None              # graphs: a column of train/val/test per node
    directed: bool = False                # graphs: keep edge directions (default: symmetric adjacency)

    @model_validator(mode="after")
    def _one_kind(self) -> "Source":
        kinds = [k for k in SOURCE_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a data source mapping names exactly one file or folder with one of the keys "
                             + ", ".join(SOURCE_KINDS) + (f" (found {', '.join(kinds)})" if kinds else ""))
        allowed = set(SOURCE_OPTIONS[kinds[0]]) | {"inputs", kinds[0]}
        wrong = [k for k in self.model_fields_set if k not in allowed]
        if wrong:
            raise ValueError(f"option{'s' if len(wrong) > 1 else ''} {', '.join(wrong)} do{'es' if len(wrong) == 1 else ''}"
                             f" not apply to a {kinds[0]} source (its options: "
                             f"{', '.join(sorted(allowed - {kinds[0]}))})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in SOURCE_KINDS if getattr(self, k) is not None)

    @property
    def path(self) -> str:
        return getattr(self, self.kind)


def _source_tag(v: Any) -> str | None:
    if v is None:
        return "none"
    if isinstance(v, dict):
        return "dict"
    if isinstance(v, str):
        return "str"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return "float"
    return None


_SOURCE_HELP = ("a data source is a path (.npz, a folder, .csv, .tsv, .txt, ...), builtin:NAME, a mapping "
                "such as {csv: PATH, label: COLUMN}, or for val/test a fraction of the training data")
SourceOrPath = Annotated[Union[Annotated[str, Tag("str")], Annotated[Source, Tag("dict")],
                               Annotated[None, Tag("none")]],
                         Discriminator(_source_tag, custom_error_type="data_source", custom_error_message=_SOURCE_HELP)]
SourceOrFraction = Annotated[Union[Annotated[float, Tag("float")], Annotated[str, Tag("str")],
                                   Annotated[Source, Tag("dict")], Annotated[None, Tag("none")]],
                             Discriminator(_source_tag, custom_error_type="data_source",
                                           custom_error_message=_SOURCE_HELP)]


class Data(Strict):
    train: SourceOrPath = None
    val: SourceOrFraction = None
    test: SourceOrFraction = None


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
    checkpoint: CheckpointPolicy | None = None     # what best.npz means (default: see docs/training.md)
    log: Log | None = None                # per-step records (default: none; history.csv is always written)

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


class Generate(Strict):
    """Autoregressive decoding (`specc generate`): which input is fed back, which output gives the logits.
    References are checked (with positions) in compiler/generate_check.py."""

    feed: str                             # an int64 input [N, T]: the tokens so far, starting with bos
    logits: str                           # an output or node [N, T, V] (the last position is read) or [N, V]
    bos: int = Field(ge=0)
    eos: int | None = Field(None, ge=0)   # None: always generate max_len tokens
    pad: int = Field(0, ge=0)             # fills a sequence after its eos in the saved array
    max_len: int = Field(50, ge=1)
    encoder: list[str] | None = None      # inputs given by the user and read once (default: all but feed)
    state: dict[str, str] = Field(default_factory=dict)   # ref read as initial state -> ref of the next state


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
    generate: Any = None                  # validated on its own (Generate), as train


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
    generate: Any = None
