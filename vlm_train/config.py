"""The job config: a typed tree loaded from YAML with dotted command-line overrides.

    cfg = load_config("configs/debug/<family>_tiny_sft.yaml", ["sft.max_steps=4"])

Our own sections are declared below; ``sft:`` and ``grpo:`` pass straight through to TRL's
``SFTConfig`` / ``GRPOConfig`` (their field names are checked against TRL, so a typo is an
error that names the key, not a silently ignored option). The fields the launcher sets itself
are listed once, in ``vlm_train.train.args.OWNED``; a user value for one is an error too.
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from vlm_train.cluster.storage_path import check_storage_path
from vlm_train.config_base import ConfigError, apply_override, from_dict, load_yaml, to_dict
from vlm_train.models import DEFAULT_FAMILY
from vlm_train.redact import check_override, redact
from vlm_train.run_dir import RunDir

__all__ = ["ConfigError", "JobConfig", "load_config"]

# The reader names of vlm_train/data/formats (FORMATS there), plus auto-detection; a test keeps
# the two lists equal (the config is typed statically, the registry is built at import).
DataFormat = Literal["auto", "conversations", "conversations_meta", "toolqa", "refcoco", "trl", "canonical"]

@dataclass
class FreezeConfig:
    vision: bool = False
    """Freeze the vision tower."""
    projector: bool = False
    """Freeze the vision-to-language projector (the family's ``module_groups["projector"]``; in a
    family with a visual vocabulary, its visual head and embedding table)."""
    llm: bool = False
    """Freeze the language model."""

# ZeRO-1/2 bucket size on CPU (elements): a whole tiny model's gradients (2M for the quick
# start's) in one bucket; DeepSpeed preallocates it (contiguous_gradients), so 40 MB, not more.
CPU_BUCKET_ELEMENTS = int(1e7)


@dataclass
class LoraConfig:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | None = None
    """None: the family's default (language-model attention and MLP projections)."""
    merge_at_end: bool = True
    """Also write a merged full model next to the adapter at the end of training."""

    def validate(self, prefix: str) -> None:
        if self.r <= 0:
            raise ConfigError(f"{prefix}.r", f"must be > 0, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{prefix}.dropout", f"must be in [0, 1), got {self.dropout}")


@dataclass
class TinyConfig:
    """Settings for ``model.path: tiny`` (a random model built offline at job start)."""

    seed: int = 0
    image_size: int = 64
    vision_hidden: int = 64
    text_hidden: int = 96
    layers: int = 2
    max_tiles: int | None = None
    """Tiles per image the tiny processor makes (families that tile); 1: the model sees one
    downscaled view of a larger image, and only the crop tool shows it at full resolution. None: family default."""
    vision_pretrain_steps: int = 0
    """Steps of pretraining the tiny vision tower and projector get at build time, on a dense
    synthetic-shapes task (vlm_train/models/common/vision_pretrain.py), as a real vision encoder
    is pretrained before VLM training; 0: left random. Families without it refuse > 0."""
    vision_pretrain_patterns: bool = False
    """The pretraining's shapes are striped or plain at random and the task also names the
    pattern, so the tower can tell stripes apart where they are resolved (for
    ``data.synthetic.modes: [pattern]``)."""


@dataclass
class ModelConfig:
    family: str = DEFAULT_FAMILY
    """A family registered in vlm_train/models/__init__.py (FAMILIES; the default is its
    DEFAULT_FAMILY)."""
    path: str = "tiny"
    """Checkpoint directory, or ``tiny`` to build a random tiny model of the family offline."""
    dtype: Literal["auto", "bfloat16", "float32", "float16"] = "auto"
    """auto: bfloat16 on GPU, float32 on CPU."""
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = "auto"
    """auto: flash_attention_2 when flash-attn is installed and a GPU is present, else sdpa."""
    max_pixels: int | None = None
    """Upper bound on image pixels fed to the processor (family default when None)."""
    max_tiles: int | None = None
    """Dynamic tiling (families that tile): max tiles per image (family default when None)."""
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    lr_scale: dict[str, float] = field(default_factory=dict)
    """Learning-rate multipliers per module group (``vision``, ``projector``, ``llm``; others 1),
    as a real recipe trains the projector or tower slower than the language model: the stage's
    ``learning_rate`` and schedule, scaled per group (vlm_train/train/param_groups.py)."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    tiny: TinyConfig = field(default_factory=TinyConfig)

    def resolved_dtype(self, cuda: bool) -> str:
        """The torch dtype name the model is loaded in, and the precision training runs at."""
        if self.dtype == "auto":
            return "bfloat16" if cuda else "float32"
        return self.dtype

    def validate(self, prefix: str) -> None:
        from vlm_train.models import FAMILIES, get_family

        if self.family not in FAMILIES:
            raise ConfigError(f"{prefix}.family", f"unknown model family {self.family!r} (known: {', '.join(FAMILIES)})")
        if self.path != "tiny" and not Path(self.path).is_dir():
            raise ConfigError(f"{prefix}.path", f"checkpoint directory not found: {self.path}")
        if self.tiny.vision_pretrain_steps < 0:
            raise ConfigError(f"{prefix}.tiny.vision_pretrain_steps", f"must be >= 0, got {self.tiny.vision_pretrain_steps}")
        if self.tiny.vision_pretrain_patterns and not self.tiny.vision_pretrain_steps:
            raise ConfigError(f"{prefix}.tiny.vision_pretrain_patterns", "needs model.tiny.vision_pretrain_steps > 0")
        builds = inspect.signature(get_family(self.family).tiny).parameters
        for key, what in (("vision_pretrain_steps", "vision"), ("vision_pretrain_patterns", "pattern")):
            if getattr(self.tiny, key) and key not in builds:
                raise ConfigError(f"{prefix}.tiny.{key}", f"the {self.family} tiny model has no {what} pretraining")
        groups = {f.name for f in fields(FreezeConfig)}
        for g, v in self.lr_scale.items():
            if g not in groups:
                raise ConfigError(f"{prefix}.lr_scale.{g}", f"unknown module group (known: {', '.join(sorted(groups))})")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ConfigError(f"{prefix}.lr_scale.{g}", f"must be a number > 0, got {v!r}")
        if self.freeze.vision and self.freeze.projector and self.freeze.llm and not self.lora.enabled:
            raise ConfigError(f"{prefix}.freeze", "everything is frozen and LoRA is off: nothing to train")


@dataclass
class SourceConfig:
    path: str
    """A data file (JSON, JSONL) or a meta JSON naming several conversation files."""
    format: DataFormat = "auto"
    image_root: str | None = None
    """Root that relative image paths resolve against (defaults to the file's folder)."""
    repeat: float = 1.0

    def validate(self, prefix: str) -> None:
        if not Path(self.path).exists():
            raise ConfigError(f"{prefix}.path", f"data file not found: {self.path}")
        if self.image_root is not None and not Path(self.image_root).is_dir():
            raise ConfigError(f"{prefix}.image_root", f"image root not found: {self.image_root}")
        if self.repeat <= 0:
            raise ConfigError(f"{prefix}.repeat", f"must be > 0, got {self.repeat}")


@dataclass
class SyntheticConfig:
    n: int = 64
    """Number of training samples to generate."""
    n_eval: int = 32
    seed: int = 0
    image_size: int = 64
    max_shapes: int = 3
    kind: Literal["grounding", "toolqa", "mixed", "grounding_crop", "grounding_mixed"] = "grounding"
    """grounding: prompt -> box; toolqa: question -> crop in the reasoning -> answer; mixed: either;
    grounding_crop: prompt -> crop call around the target -> the crop -> box; grounding_mixed:
    grounding or grounding_crop (``crop_fraction`` of the samples crop)."""
    crop_fraction: float = 0.5
    targets_per_image: int = 1
    """Training samples per picture, each naming another of its shapes (RefCOCO refers to
    several objects per image): the same pixels with another answer teach that the phrase
    decides. The held-out split keeps one per picture."""
    text_first: bool = False
    """The user turn puts the phrase before the image. In a causal language model the image
    tokens then see the phrase, so each can tell whether it belongs to the named shape; with
    the image first only the answer's tokens can match the phrase against the image
    (docs/models.md). Real checkpoints expect the image first (their prompts)."""
    modes: list[str] | None = None
    """Modes of multi-shape scenes, among colour, size, relation, pattern (default the first
    three). ``[pattern]``: striped and plain twins that only a crop tells apart on an image four
    times the model's input side (docs/models.md, "A task where the crop pays")."""
    min_shapes: int = 1

    def validate(self, prefix: str) -> None:
        from vlm_train.data.synthetic import MODES

        if self.modes is not None and (not self.modes or any(m not in MODES for m in self.modes)):
            raise ConfigError(f"{prefix}.modes", f"must be a non-empty list among {', '.join(MODES)}, got {self.modes}")
        if not 1 <= self.min_shapes <= self.max_shapes:
            raise ConfigError(f"{prefix}.min_shapes", f"must be in [1, max_shapes={self.max_shapes}], got {self.min_shapes}")
        if self.targets_per_image < 1:
            raise ConfigError(f"{prefix}.targets_per_image", f"must be >= 1, got {self.targets_per_image}")
        if not 0.0 <= self.crop_fraction <= 1.0:
            raise ConfigError(f"{prefix}.crop_fraction", f"must be in [0, 1], got {self.crop_fraction}")
        if self.n <= 0:
            raise ConfigError(f"{prefix}.n", f"must be > 0, got {self.n}")
        if self.max_shapes < 1:
            raise ConfigError(f"{prefix}.max_shapes", f"must be >= 1, got {self.max_shapes}")


# Upper bounds of what one sample may cost: frames per video, images per sample, tokens per
# sample (sft.max_length, grpo prompt + completion lengths). Beyond them a single bad config
# value means an out-of-memory crash hours into a run, not a clear error at launch.
MAX_FRAMES = 256
MAX_IMAGES = 256
MAX_TOKENS = 1 << 20


@dataclass
class DataConfig:
    train: list[SourceConfig] = field(default_factory=list)
    eval: list[SourceConfig] = field(default_factory=list)
    synthetic: SyntheticConfig | None = None
    """Generate synthetic grounding data (used when ``train`` is empty)."""
    image_roots: list[str] = field(default_factory=list)
    """Extra roots images may live under; paths outside every root are rejected."""
    on_error: Literal["skip", "raise"] = "skip"
    max_error_fraction: float = 0.05
    num_frames: int = 8
    """Frames sampled per video (at most MAX_FRAMES)."""
    max_image_pixels: int = 64_000_000
    """Decompression-bomb cap: images whose header claims more pixels are rejected; crops and
    resized images never exceed it either."""
    max_images_per_sample: int = 16
    """Samples with more image parts (crops included) are rejected at validation."""
    cache: Literal["none", "memory", "disk"] = "none"
    """SFT: keep each sample's decoded and tiled inputs after first use, so later epochs (and
    the length measurement of packing / group_by_length) do not process its images again."""
    cache_dir: str | None = None
    """data.cache: disk: where (default <run_dir>/cache/inputs; node-local disk is fastest)."""

    @property
    def has_eval_split(self) -> bool:
        """Eval sources, or synthetic data (used only without train sources) with n_eval > 0."""
        return bool(self.eval) or (not self.train and self.synthetic is not None and self.synthetic.n_eval > 0)

    def validate(self, prefix: str) -> None:
        if self.train and self.synthetic is not None:
            raise ConfigError(f"{prefix}.synthetic", "is not used when data.train is given; remove one (data.synthetic=null)")
        if not 0.0 <= self.max_error_fraction <= 1.0:
            raise ConfigError(f"{prefix}.max_error_fraction", f"must be in [0, 1], got {self.max_error_fraction}")
        if not 1 <= self.num_frames <= MAX_FRAMES:
            raise ConfigError(f"{prefix}.num_frames", f"must be in [1, {MAX_FRAMES}], got {self.num_frames}")
        if not 1 <= self.max_images_per_sample <= MAX_IMAGES:
            raise ConfigError(f"{prefix}.max_images_per_sample", f"must be in [1, {MAX_IMAGES}], got {self.max_images_per_sample}")
        if self.max_image_pixels < 1:
            raise ConfigError(f"{prefix}.max_image_pixels", f"must be >= 1, got {self.max_image_pixels}")
        for i, root in enumerate(self.image_roots):
            if not Path(root).is_dir():
                raise ConfigError(f"{prefix}.image_roots[{i}]", f"directory not found: {root}")


@dataclass
class ToolsConfig:
    crop: bool = True
    """Offer the crop tool in rollouts; false: a rollout never executes a call."""
    max_calls: int = 2
    """Crop calls executed per rollout (when ``crop`` is on)."""
    min_crop_size: int = 4
    """Crops smaller than this many pixels per side are grown around their centre."""
    thinking_budget: int | None = None
    """Rollouts: after this many sampled tokens without </think>, append the official stop text
    (the model-card protocol of docs/models.md, "Thinking budget", applied to every family) and
    continue."""

    @property
    def call_limit(self) -> int:
        """Crop calls a rollout may execute: 0 when the tool is off."""
        return self.max_calls if self.crop else 0

    def validate(self, prefix: str) -> None:
        if self.max_calls < 0:
            raise ConfigError(f"{prefix}.max_calls", f"must be >= 0, got {self.max_calls}")
        if self.min_crop_size < 1:
            raise ConfigError(f"{prefix}.min_crop_size", f"must be >= 1 pixel, got {self.min_crop_size}")
        if self.thinking_budget is not None and self.thinking_budget < 1:
            raise ConfigError(f"{prefix}.thinking_budget", f"must be >= 1, got {self.thinking_budget}")


@dataclass
class RewardsConfig:
    weights: dict[str, float] = field(default_factory=lambda: {"iou": 1.0, "format": 0.2})
    iou_threshold: float = 0.5

    def validate(self, prefix: str) -> None:
        # Imported here so that loading a config stays light; the registry is the one list of names.
        from vlm_train.rewards.functions import build_reward_funcs

        if self.weights:  # an SFT-only job may select no reward; GRPO checks again when it builds them
            build_reward_funcs(self.weights, self.iou_threshold, prefix=prefix)


@dataclass
class LossConfig:
    coordinate_sigma: float = 0.0
    """SFT: train coordinate-value tokens against a Gaussian of this standard deviation (in the
    family's value units, e.g. thousandths in the ``1000`` convention) around the target instead of
    one-hot; 0 = plain cross-entropy. Needs a tokenizer with one token per value (the tiny ones)."""

    def validate(self, prefix: str) -> None:
        if self.coordinate_sigma < 0:
            raise ConfigError(f"{prefix}.coordinate_sigma", f"must be >= 0, got {self.coordinate_sigma}")


@dataclass
class ClusterConfig:
    pool: str = "local-cpu"
    """Name of a node-pool spec in ``pools_dir``."""
    pools_dir: str = "cluster/pools"
    nodes: int = 1
    workers_per_node: int | None = None
    """None: one per GPU (GPU pools) or the pool's ``workers_per_node`` (CPU pools)."""
    address: str | None = None
    """Ray address. None: $RAY_ADDRESS (set by ``ray job submit``) or a local in-process Ray."""
    placement_timeout_s: float | None = 600.0
    """How long a stage waits for its workers' resources before failing (null: forever, e.g.
    while an autoscaler adds nodes)."""

    def validate(self, prefix: str) -> None:
        if self.placement_timeout_s is not None and self.placement_timeout_s <= 0:
            raise ConfigError(f"{prefix}.placement_timeout_s", f"must be > 0 or null, got {self.placement_timeout_s}")
        if self.nodes < 1:
            raise ConfigError(f"{prefix}.nodes", f"must be >= 1, got {self.nodes}")
        if self.workers_per_node is not None and self.workers_per_node < 1:
            raise ConfigError(f"{prefix}.workers_per_node", f"must be >= 1, got {self.workers_per_node}")


@dataclass
class DeepSpeedConfig:
    config: str | None = "configs/deepspeed/zero2.json"
    """A DeepSpeed JSON; null trains with plain DDP."""

    def build(self, cuda: bool, dtype: str) -> dict[str, Any] | None:
        """The DeepSpeed dict for the device at hand (the one place it is made).

        Precision follows the resolved ``model.dtype`` (the same value the TrainingArguments
        get): bf16 or fp16 enabled on a GPU, neither on CPU (bf16 autocast on CPU is slow and
        fp16 unsupported). Offload buffers are not pinned without CUDA (pinning needs it).
        """
        if self.config is None:
            return None
        ds = json.loads(Path(self.config).read_text())
        if dtype == "float16":
            ds["fp16"] = {**ds.get("fp16", {}), "enabled": True}
        else:
            ds.pop("fp16", None)
        ds["bf16"] = {"enabled": dtype == "bfloat16"}
        if not cuda:
            zo = ds.get("zero_optimization", {})
            for k in ("offload_optimizer", "offload_param"):
                if k in zo:
                    zo[k]["pin_memory"] = False
            if zo.get("stage") in (1, 2):
                # gloo on CPU: one collective per bucket, and "auto" sizes buckets at hidden_size^2
                # elements (36,864 for the tiny model: ~50 all-reduces a step); overlap_comm needs
                # a side CUDA stream, which CPU lacks. One bucket, reduced after backward.
                zo["overlap_comm"] = False
                for k in ("reduce_bucket_size", "allgather_bucket_size"):
                    zo[k] = CPU_BUCKET_ELEMENTS
        return ds

    @property
    def zero_stage(self) -> int | None:
        """ZeRO stage of the configured JSON (None: plain DDP)."""
        if self.config is None:
            return None
        return int(json.loads(Path(self.config).read_text()).get("zero_optimization", {}).get("stage", 0))

    def validate(self, prefix: str) -> None:
        if self.config is not None and not Path(self.config).is_file():
            raise ConfigError(f"{prefix}.config", f"DeepSpeed config not found: {self.config}")


@dataclass
class RunConfig:
    name: str = "vlm_train"
    storage_path: str = "runs"
    """Checkpoints, TensorBoard and reports go to <storage_path>/<name>/ (shared storage on clusters)."""
    max_failures: int = 0
    """Worker-group restarts from the last checkpoint before the run fails (-1: forever)."""
    checkpoints_to_keep: int | None = 2
    """Checkpoints kept per stage in storage, the newest whole ones (None: all); what faults left
    (half-written folders, ones Ray never registered) is pruned too (vlm_train/train/prune.py)."""
    seed: int = 42
    fail_at_step: int | None = None
    """Testing aid: raise in every worker at this global step once (a simulated crash)."""
    stop_at_step: int | None = None
    """Testing aid: exit the job cleanly (status 3) after this step's checkpoint (simulated preemption)."""
    on_nonfinite: Literal["stop", "skip"] = "stop"
    """A NaN/Inf loss or gradient norm: stop before that step's checkpoint, or skip the batch (counted)."""

    def validate(self, prefix: str) -> None:
        from vlm_train.names import run_name_problem

        problem = run_name_problem(self.name)
        if problem:
            raise ConfigError(f"{prefix}.name", problem)
        if self.max_failures < -1:
            raise ConfigError(f"{prefix}.max_failures", f"must be >= -1, got {self.max_failures}")


@dataclass
class EvalSetConfig:
    """One named evaluation set (``python -m jobs.evaluate``): a data file or synthetic data."""

    name: str
    path: str | None = None
    """A grounding file any reader takes (RefCOCO JSONL, canonical, conversations, ...)."""
    format: DataFormat = "auto"
    image_root: str | None = None
    synthetic: SyntheticConfig | None = None
    """Generate the set (``n_eval`` samples from ``seed``) instead of reading ``path``."""
    limit: int | None = None
    """Score only the first ``limit`` samples."""

    def validate(self, prefix: str) -> None:
        if (self.path is None) == (self.synthetic is None):
            raise ConfigError(prefix, f"set {self.name!r}: give exactly one of path or synthetic")
        if self.path is not None:
            SourceConfig(self.path, self.format, self.image_root).validate(prefix)
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"{prefix}.limit", f"must be >= 1, got {self.limit}")


@dataclass
class EvaluateConfig:
    sets: list[EvalSetConfig] = field(default_factory=list)
    max_new_tokens: int = 100
    """The RefCOCO protocol's greedy decoding allowance."""
    batch_size: int = 8
    out: str | None = None
    """Report, predictions and TensorBoard directory (default: <run dir>/evaluate)."""
    images_per_set: int = 4
    """Box images (truth green, prediction red) written to TensorBoard per set."""

    def validate(self, prefix: str) -> None:
        names = [s.name for s in self.sets]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ConfigError(f"{prefix}.sets", f"set name {dup!r} appears twice")
        for k in ("max_new_tokens", "batch_size"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{prefix}.{k}", f"must be >= 1, got {getattr(self, k)}")


@dataclass
class InferConfig:
    """``python -m jobs.infer`` / ``vlm-train infer``: generation over a file of prompts."""

    data: str | None = None
    """Prompts: any data format the readers take (the conversation before each final answer)
    or JSONL of {"id", "messages" | "prompt", "images", "video"}."""
    format: Literal["prompts", DataFormat] = "auto"
    image_root: str | None = None
    out: str | None = None
    """Output JSONL (default: <run dir>/infer/predictions.jsonl)."""
    resume: bool = False
    """Skip ids already in ``out``; without it an existing ``out`` is an error."""
    thinking: bool = False
    thinking_budget: int | None = None
    max_new_tokens: int = 512
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 4
    tools: bool = True
    """Execute crop calls live (at most tools.max_calls per prompt)."""
    engine: Literal["auto", "local", "ray"] = "auto"
    """auto: Ray Data when a cluster address is known (cluster.address or $RAY_ADDRESS), else one process."""

    def validate(self, prefix: str) -> None:
        for k in ("max_new_tokens", "batch_size"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{prefix}.{k}", f"must be >= 1, got {getattr(self, k)}")
        if self.thinking_budget is not None and self.thinking_budget < 1:
            raise ConfigError(f"{prefix}.thinking_budget", f"must be >= 1, got {self.thinking_budget}")
        if self.data is not None and not Path(self.data).is_file():
            raise ConfigError(f"{prefix}.data", f"prompt file not found: {self.data}")


@dataclass
class JobConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(synthetic=SyntheticConfig()))
    tools: ToolsConfig = field(default_factory=ToolsConfig)
    rewards: RewardsConfig = field(default_factory=RewardsConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    run: RunConfig = field(default_factory=RunConfig)
    evaluation: EvaluateConfig = field(default_factory=EvaluateConfig)
    """python -m jobs.evaluate: the named sets and their settings."""
    infer: InferConfig = field(default_factory=InferConfig)
    stages: list[str] = field(default_factory=lambda: ["sft"])
    """Training stages in order (sft, grpo), optionally ending in ``eval``: evaluate the input
    model and every stage's final model on the eval split. ``[eval]`` alone evaluates
    ``model.path``."""
    sft: dict[str, Any] = field(default_factory=dict)
    """Passed to trl.SFTConfig."""
    grpo: dict[str, Any] = field(default_factory=dict)
    """Passed to trl.GRPOConfig."""
    source: str | None = None
    """The YAML file this config came from (set by the loader)."""

    @property
    def run_dir(self) -> RunDir:
        return RunDir(Path(self.run.storage_path).absolute() / self.run.name)

    @property
    def training_stages(self) -> list[str]:
        return [s for s in self.stages if s != "eval"]

    @property
    def evaluate(self) -> bool:
        return "eval" in self.stages

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @staticmethod
    def from_dict(d: dict[str, Any], file: str | None = None) -> JobConfig:
        try:
            cfg = from_dict(JobConfig, {k: v for k, v in d.items() if k != "source"})
        except ConfigError as e:
            raise ConfigError(e.key, e.reason, file) from None
        cfg.source = file
        return cfg


TRL_SECTIONS = {"sft": "SFTConfig", "grpo": "GRPOConfig"}
STAGES = ("sft", "grpo", "eval")

# Tokens per sample are bounded: a null or huge length means an out-of-memory crash hours in.
_TOKEN_BOUNDS = ("max_length", "max_prompt_length", "max_completion_length")


def _check_trl_section(section: str, values: dict[str, Any], file: str | None) -> None:
    import dataclasses as dc

    import trl

    from vlm_train.train.args import check_user_args
    from vlm_train.train.sft_options import split_sft

    cls = getattr(trl, TRL_SECTIONS[section])
    names = {f.name for f in dc.fields(cls)}
    try:
        check_user_args(section, values)
    except ConfigError as e:
        raise ConfigError(e.key, e.reason, file) from None
    if section == "sft":  # our own keys (packing, loss weighting, ...) are checked by us
        _, values = split_sft(values, file)
    for k, v in values.items():
        if k not in names:
            raise ConfigError(f"{section}.{k}", f"unknown {cls.__name__} field", file)
        default = next(f for f in dc.fields(cls) if f.name == k).default
        if isinstance(default, bool) and not isinstance(v, bool):
            raise ConfigError(f"{section}.{k}", f"expected true/false, got {v!r}", file)
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{section}.{k}", f"expected a number, got {v!r}", file)
            if k in ("learning_rate", "max_steps", "per_device_train_batch_size") and v <= 0 and k != "max_steps":
                raise ConfigError(f"{section}.{k}", f"must be > 0, got {v!r}", file)
        if k in _TOKEN_BOUNDS and (v is None or isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_TOKENS):
            raise ConfigError(f"{section}.{k}", f"tokens per sample must be bounded: an integer in [1, {MAX_TOKENS}], got {v!r}", file)


def load_config(path: str | os.PathLike, overrides: list[str] | None = None, check_trl: bool = True,
                trains: bool = True) -> JobConfig:
    """Load ``path``, apply ``a.b=c`` overrides, validate. Raises ConfigError on any problem.

    ``trains``: the job trains, so it needs training data (inference and evaluation jobs do not).
    """
    file = str(path)
    p = Path(path)
    if not p.is_file():
        raise ConfigError("<file>", f"config file not found: {file}")
    try:
        tree = load_yaml(p.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "?"
        raise ConfigError(f"<yaml {where}>", f"invalid YAML: {getattr(e, 'problem', e)}", file) from None
    if not isinstance(tree, dict):
        raise ConfigError("<root>", "the config must be a mapping of sections", file)
    for o in overrides or []:
        refused = check_override(o)
        if refused:
            raise ConfigError(o.split("=", 1)[0].strip(), refused, file)
        try:
            apply_override(tree, o)
        except ConfigError as e:
            raise ConfigError(e.key, e.reason, file) from None
    cfg = JobConfig.from_dict(tree, file)
    for section in TRL_SECTIONS:
        if check_trl and getattr(cfg, section):
            _check_trl_section(section, getattr(cfg, section), file)
    absolutise(cfg)
    _check_stages(cfg, file)
    if trains and not cfg.data.train and cfg.data.synthetic is None:
        raise ConfigError("data.train", "no training data: give data.train sources or data.synthetic", file)
    return cfg


def _check_stages(cfg: JobConfig, file: str | None) -> None:
    bad = [s for s in cfg.stages if s not in STAGES]
    if bad:
        raise ConfigError("stages", f"unknown stage {bad[0]!r} (known: {', '.join(STAGES)})", file)
    if not cfg.stages:
        raise ConfigError("stages", "empty: name at least one of sft, grpo, eval", file)
    if "eval" in cfg.stages[:-1] or cfg.stages.count("eval") > 1:
        raise ConfigError("stages", "eval comes once, last (it evaluates the input model and every stage's model)", file)
    if len(set(cfg.training_stages)) != len(cfg.training_stages):
        raise ConfigError("stages", f"a stage is listed twice: {cfg.stages}", file)
    if cfg.evaluate and not cfg.data.has_eval_split:
        raise ConfigError("stages", "eval needs an eval split: give data.eval sources or data.synthetic.n_eval > 0", file)


def absolutise(cfg: JobConfig) -> None:
    """Make every path absolute (relative to the launch directory) before workers see it:
    Ray workers run in other directories, and a resubmitted job must point at the same files."""

    def a(p: str | None) -> str | None:
        return None if p is None else str(Path(p).expanduser().absolute())

    if cfg.model.path != "tiny":
        cfg.model.path = a(cfg.model.path)
    for src in [*cfg.data.train, *cfg.data.eval]:
        src.path = a(src.path)
        src.image_root = a(src.image_root)
    cfg.data.image_roots = [a(r) for r in cfg.data.image_roots]
    for es in cfg.evaluation.sets:
        es.path, es.image_root = a(es.path), a(es.image_root)
    cfg.evaluation.out = a(cfg.evaluation.out)
    cfg.infer.data, cfg.infer.image_root, cfg.infer.out = a(cfg.infer.data), a(cfg.infer.image_root), a(cfg.infer.out)
    cfg.data.cache_dir = a(cfg.data.cache_dir)
    cfg.deepspeed.config = a(cfg.deepspeed.config)
    cfg.cluster.pools_dir = a(cfg.cluster.pools_dir)
    check_storage_path(cfg.run.storage_path)  # inside `ray job submit` the cwd is Ray's temp copy
    cfg.run.storage_path = a(cfg.run.storage_path)


def dump_config(cfg: JobConfig) -> str:
    """YAML of the resolved config with secrets redacted (safe to write next to a run)."""
    return yaml.safe_dump(redact(cfg.to_dict()), sort_keys=False)
