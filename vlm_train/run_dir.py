"""Every path of a run, named once.

A run directory is ``<run.storage_path>/<run.name>/`` (shared storage on clusters):

    config.yaml            resolved config, secrets redacted
    base_model/            the tiny model, when model.path is ``tiny``
    data/                  prepared.json + the validated canonical JSONL the workers read
    sft/ grpo/             Ray Train run folders: checkpoint-000050/ ... (resume source)
    models/<stage>/        final weights (full, adapter, merged) + MODEL pointer
    tensorboard/<stage>/   training event files (rank 0); tensorboard/eval/ evaluation events
    stages/<stage>.json    what the stage did (steps, resume point, loss history)
    stages/<stage>.resumes.jsonl  where each attempt of the stage started
    stages/<stage>.job.json  the config keys the stage trained from (vlm_train.launch.same_job)
    eval/<tag>.json        one evaluation (tag: base or a stage name)
    report.json            the pipeline's per-stage summary
    work/<stage>/rank<k>/  rank-local trainer output (checkpoints before Ray takes them)
    logs/driver.log        library warnings and Ray's driver-side messages (not on the console)
    logs/<stage>/rank<k>.log   everything a training worker printed or logged
    logs/<stage>/progress.jsonl  rank 0's step records, which the driver prints as progress
    slurm-<id>.out, slurm-<id>/   a SLURM job's batch log and its driver/Ray logs
    probe.json             where the cluster probe's workers landed

Nothing else in the package joins path segments below a run directory: it asks this object.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def __fspath__(self) -> str:
        return str(self.root)

    def __str__(self) -> str:
        return str(self.root)

    # ---- inputs -------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def base_model(self) -> Path:
        return self.root / "base_model"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def inputs_cache(self) -> Path:
        """``data.cache: disk`` default: per-sample model inputs (decoded, tiled pixels)."""
        return self.root / "cache" / "inputs"

    @property
    def prepared(self) -> Path:
        """The record of the prepared data (a resubmitted run reuses it)."""
        return self.data / "prepared.json"

    def split(self, name: str) -> Path:
        """Canonical JSONL of one split (train, eval)."""
        return self.data / f"{name}.jsonl"

    # ---- training -----------------------------------------------------------------------
    def ray_stage(self, stage: str) -> Path:
        """Ray Train's folder for a stage (its ``RunConfig(name=stage, storage_path=root)``)."""
        return self.root / stage

    def work(self, stage: str, rank: int | None = None) -> Path:
        base = self.root / "work" / stage
        return base if rank is None else base / f"rank{rank}"

    def failure_marker(self, stage: str) -> Path:
        """Written once by run.fail_at_step so a restarted group does not fail again."""
        return self.work(stage) / "failure_injected"

    def models(self, stage: str) -> Path:
        return self.root / "models" / stage

    def model_pointer(self, stage: str) -> Path:
        """``models/<stage>/MODEL`` names the loadable folder (full or merged)."""
        return self.models(stage) / "MODEL"

    def final_model(self, stage: str) -> Path | None:
        """The loadable final model of a stage, or None before the stage has one."""
        pointer = self.model_pointer(stage)
        return self.models(stage) / pointer.read_text().strip() if pointer.is_file() else None

    def tensorboard(self, stage: str) -> Path:
        return self.root / "tensorboard" / stage

    @property
    def tensorboard_eval(self) -> Path:
        return self.tensorboard("eval")

    def stage_status(self, stage: str) -> Path:
        return self.root / "stages" / f"{stage}.json"

    def stage_job(self, stage: str) -> Path:
        return self.root / "stages" / f"{stage}.job.json"

    def stage_resumes(self, stage: str) -> Path:
        return self.root / "stages" / f"{stage}.resumes.jsonl"

    # ---- results ------------------------------------------------------------------------
    def eval(self, tag: str) -> Path:
        return self.root / "eval" / f"{tag}.json"

    @property
    def report(self) -> Path:
        return self.root / "report.json"

    # ---- logs ---------------------------------------------------------------------------
    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def driver_log(self) -> Path:
        return self.logs / "driver.log"

    def worker_log(self, stage: str, rank: int) -> Path:
        return self.logs / stage / f"rank{rank}.log"

    def progress(self, stage: str) -> Path:
        return self.logs / stage / "progress.jsonl"

    # ---- cluster logs -------------------------------------------------------------------
    def slurm_log(self, job: str) -> Path:
        """The batch log; ``job`` is a SLURM job id or sbatch's ``%j`` pattern."""
        return self.root / f"slurm-{job}.out"

    def slurm_dir(self, job: str) -> Path:
        """The driver's job.log and the head's Ray logs of one SLURM job."""
        return self.root / f"slurm-{job}"

    @property
    def probe(self) -> Path:
        return self.root / "probe.json"
