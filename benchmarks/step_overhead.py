"""What the distributed training step costs over a plain loop doing the same work, and what a
stage costs outside its step loop.

    python benchmarks/step_overhead.py [CONFIG] [--steps 40] [--grpo-steps 8] [--plain-steps 30] [--plain-repeats 2]
        [key=value ...]

In one process tree and one sitting:
  (i)  a plain single-process PyTorch loop on the same tiny model, the same synthetic data and
       the same samples per optimizer step (per-device batch x workers): the project's own input
       builder, torch AdamW, torch threads = the node's CPUs;
  (ii) the real SFT stage of CONFIG (Ray Train, its workers, DeepSpeed, TRL) for ``--steps``
       steps, its steady-state step rate read from the step timestamps of its TensorBoard
       events after ``--warmup`` steps (intervals that hold a checkpoint save are left out and
       reported as save cost);
  (iii) the GRPO stage for ``--grpo-steps`` steps, the same way (no plain counterpart: its
       step is mostly generation; its time per step and fixed cost are printed).
Fixed cost of a stage: its wall time minus steps x steady step time, split into start (job
start to the first step, the first step's own steady time excluded), saves and finish (last
step to the stage's return: final model, status, worker group teardown). Against it, the Ray
Train floor: the same TorchTrainer (scaling, backend, worker env) around a loop that returns at
once, run before and after the stages: the start that Ray Train's controller, helper actors and
worker processes take whatever the loop does.

The plain loop runs ``--plain-repeats`` times with 1 and with as many threads as the node has CPUs,
before and after the job. The baseline is the best thread count's median run: on a 2-core machine
single short runs of the same loop differ by up to 20%, and taking the fastest of them would
measure the noise, not the loop. Every figure carries the load average it was
measured under. The last line is ``ratio <job samples/s / plain samples/s>`` (SFT).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_CONFIG = "configs/debug/internvl_tiny_pipeline.yaml"


def load() -> str:
    """The 1-minute load average over the CPUs (a shared machine slows every figure alike)."""
    return f"{os.getloadavg()[0]:.1f}/{os.cpu_count()}"


def plain_loop(cfg, family, data, batch: int, steps: int, warmup: int, threads: int) -> dict[str, float]:
    """Samples/s of collate + forward + backward + AdamW step in this process."""
    import torch

    from vlm_train.train.dataset import read_samples

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, processor = family.load(cfg.model, dtype=torch.float32)
    model.train()
    # The same trainable parameters as the job (model.freeze), or the loop does more work than it.
    from vlm_train.models.common import freeze_groups

    freeze_groups(model, family.module_groups, vars(cfg.model.freeze))
    from vlm_train.models.base import InputsConfig

    builder = family.make_inputs(processor, InputsConfig.from_job(cfg, data.image_roots, int(cfg.sft.get("max_length", 2048))))
    samples = read_samples(data.train)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=float(cfg.sft.get("learning_rate", 2e-5)))
    collate = compute = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            collate = compute = 0.0
        chunk = [samples[(i * batch + j) % len(samples)] for j in range(batch)]
        t0 = time.perf_counter()
        inputs = builder(chunk)
        t1 = time.perf_counter()
        model(**inputs).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        collate, compute = collate + t1 - t0, compute + t2 - t1
    return {"samples_per_s": batch * steps / (collate + compute), "collate_ms": 1e3 * collate / steps,
            "compute_ms": 1e3 * compute / steps}


def _enter(config: dict) -> None:
    """A Ray Train loop that only notes when rank 0 got here."""
    import ray.train

    if ray.train.get_context().get_world_rank() == 0:
        Path(config["mark"]).write_text(repr(time.time()))


def ray_train_floor(p, work: Path) -> tuple[float, float]:
    """Ray Train's own start and whole fit for a loop that returns at once, with the stage's
    scaling, backend and worker environment: what no change of ours can take off a stage."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from vlm_train.launch.ray_env import worker_env
    from vlm_train.launch.trainer import torch_config

    mark = work / f"floor_{time.time_ns()}"
    started = time.time()
    TorchTrainer(_enter, train_loop_config={"mark": str(mark)},
                 torch_config=torch_config(p),
                 scaling_config=ScalingConfig(**p.scaling_config_kwargs()),
                 run_config=RunConfig(name=mark.name, storage_path=str(work / "floor"),
                                      worker_runtime_env={"env_vars": worker_env(p)})).fit()
    return float(mark.read_text()) - started, time.time() - started


def stage_timing(cfg, stage: str, started: float, ended: float, warmup: int) -> dict[str, float]:
    """Steady step time and fixed costs of a finished stage, from its TensorBoard step stamps."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    stamps: dict[int, float] = {}
    for f in sorted(cfg.run_dir.tensorboard(stage).rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        if "train/loss" in acc.Tags().get("scalars", []):
            stamps.update({e.step: e.wall_time for e in acc.Scalars("train/loss")})
    steps = sorted(stamps)
    save_every = int(getattr(cfg, stage).get("save_steps", 0) or 0)
    saves = {s for s in steps if save_every and s % save_every == 0}
    # the interval after a save step holds the save (TRL logs the step, then saves)
    steady = [stamps[s] - stamps[s - 1] for s in steps if s > warmup and s - 1 in stamps and s - 1 not in saves]
    step = statistics.mean(steady)
    save_cost = [stamps[s + 1] - stamps[s] - step for s in saves if s + 1 in stamps]
    import json

    marks = json.loads(cfg.run_dir.stage_status(stage).read_text()).get("timings", {})
    phases = {}
    if marks:  # rank 0's wall-clock marks (vlm_train/train/loop.py)
        phases = {"to_trainer_built_s": marks["trainer_built"] - started,
                  # the same start split: Ray's worker group (and imports), torch.distributed, model, the rest
                  "to_worker_s": marks["worker_entered"] - started,
                  "env_s": marks["env_ready"] - marks["worker_entered"],
                  "model_s": marks["model_loaded"] - marks["env_ready"],
                  "data_trainer_s": marks["trainer_built"] - marks["model_loaded"],
                  "to_first_step_s": stamps[steps[0]] - step - marks["trainer_built"],
                  "final_model_s": marks["final_saved"] - marks["trained"],
                  "teardown_s": ended - marks["final_saved"]}
    return {
        **phases,
        "steps": len(steps), "step_s": step, "step_s_median": statistics.median(steady),
        "start_s": stamps[steps[0]] - started - step, "saves_s": sum(save_cost), "n_saves_timed": len(save_cost),
        "finish_s": ended - stamps[steps[-1]], "wall_s": ended - started, "fixed_s": ended - started - len(steps) * step,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default=DEFAULT_CONFIG)
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--grpo-steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--plain-steps", type=int, default=30)
    ap.add_argument("--plain-repeats", type=int, default=2)
    args = ap.parse_args()

    from vlm_train.config import load_config
    from vlm_train.data.prepare import prepare_data
    from vlm_train.launch.base_model import materialise_model
    from vlm_train.launch.plan import placement
    from vlm_train.launch.ray_env import connect_ray
    from vlm_train.launch.trainer import run_stage
    from vlm_train.models import get_family

    work = Path(tempfile.mkdtemp(prefix="step_overhead_"))
    cfg = load_config(args.config, [*args.overrides, f"run.storage_path={work}", "run.name=bench",
                                    f"sft.max_steps={args.steps}", f"sft.save_steps={max(args.steps // 2, 1)}",
                                    f"grpo.max_steps={args.grpo_steps}", f"grpo.save_steps={max(args.grpo_steps // 2, 1)}",
                                    # the training step alone: held-out evaluations time themselves
                                    "sft.eval_steps=0", "grpo.eval_steps=0"])
    family = get_family(cfg.model.family)
    cfg = materialise_model(cfg, family)
    data = prepare_data(cfg, family)
    p = placement(cfg)
    batch = int(cfg.sft.get("per_device_train_batch_size", 2)) * p.num_workers
    threads = p.pool.cpus_per_node

    runs: dict[int, list[float]] = {}

    def plain(when: str) -> None:
        for _ in range(args.plain_repeats):
            for n in sorted({1, threads}):
                r = plain_loop(cfg, family, data, batch, args.plain_steps, 3, n)
                print(f"plain loop ({when}): {r['samples_per_s']:.1f} samples/s (batch {batch}, {n} threads; collate "
                      f"{r['collate_ms']:.0f} ms + forward/backward/AdamW {r['compute_ms']:.0f} ms per step); load {load()}")
                runs.setdefault(n, []).append(r["samples_per_s"])

    plain("before")

    t0 = time.time()
    connect_ray(cfg, p)
    print(f"ray start: {time.time() - t0:.1f} s")
    floors = [ray_train_floor(p, work)]
    timings = {}
    for stage in ("sft", "grpo"):
        started = time.time()
        run_stage(cfg, stage, extra={"data": data.to_json()})
        timings[stage] = t = stage_timing(cfg, stage, started, time.time(), args.warmup)
        print(f"{stage} job: {t['steps']} steps, steady {t['step_s']:.3f} s/step (median {t['step_s_median']:.3f}); "
              f"fixed {t['fixed_s']:.1f} s = start {t['start_s']:.1f} + saves {t['saves_s']:.1f} ({t['n_saves_timed']}) "
              f"+ finish {t['finish_s']:.1f}; wall {t['wall_s']:.1f} s; load {load()}")
        if "teardown_s" in t:
            print(f"  {stage} phases: worker group + model + data + trainer {t['to_trainer_built_s']:.1f} s, "
                  f"DeepSpeed init to first step {t['to_first_step_s']:.1f} s, final model {t['final_model_s']:.1f} s, "
                  f"status + teardown {t['teardown_s']:.1f} s")
            print(f"  {stage} start: to the worker loop {t['to_worker_s']:.1f} s (worker group, imports), process group "
                  f"{t['env_s']:.1f} s, model {t['model_s']:.1f} s, data + collator + trainer {t['data_trainer_s']:.1f} s")
    floors.append(ray_train_floor(p, work))
    floor = statistics.mean(f[0] for f in floors)
    print("ray train floor (a loop that returns at once, before and after the stages): enter "
          + ", ".join(f"{e:.1f} s" for e, _ in floors) + "; whole fit " + ", ".join(f"{w:.1f} s" for _, w in floors))
    for stage, t in timings.items():
        print(f"  {stage}: to the worker loop {t['to_worker_s']:.1f} s = floor {floor:.1f} + {t['to_worker_s'] - floor:.1f} s "
              f"(our imports); fixed {t['fixed_s']:.1f} s = {t['fixed_s'] - floor:.1f} s above the floor; load {load()}")
    plain("after")
    medians = {n: statistics.median(v) for n, v in runs.items()}
    best_n = max(medians, key=medians.get)
    best_plain = medians[best_n]
    job = batch / timings["sft"]["step_s"]
    print(f"sft job: {job:.1f} samples/s ({p.num_workers} workers x {batch // p.num_workers})")
    print(f"plain: {best_plain:.1f} samples/s (median of {len(runs[best_n])} runs with {best_n} threads, the faster "
          f"setting; range {min(runs[best_n]):.1f}-{max(runs[best_n]):.1f})")
    print(f"ratio {job / best_plain:.2f}")


if __name__ == "__main__":
    main()
