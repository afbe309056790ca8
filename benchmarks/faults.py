"""What each fault costs a run: real Ray, real DeepSpeed ZeRO-2, 2 CPU workers, the tiny SFT job.

    python benchmarks/faults.py [--address GCS_ADDRESS --dashboard URL] [--only NAME ...] [--steps 8]

Starts a Ray head on loopback (unless given one) and runs the job as a separate driver process
per submission, once per fault; faults are real (SIGKILL of a worker through the test hook
vlm_train/train/fault_hook.py, SIGKILL of the driver, a shard cut short on disk). Prints one row
per fault, "fault -> outcome, steps lost, steps repeated", computed from the run's records
(stages/sft.resumes.jsonl, progress records, stages/sft.json; vlm_train/testing/faults.py), and
whether each finished run's loss history equals an uninterrupted run's, step for step.

  mid-step    rank 1 SIGKILLed after backward of step 3 (restart, run.max_failures=1)
  save        rank 0 SIGKILLed while checkpoint 4 is uploading to Ray storage
  truncated   the job stopped after checkpoint 4, a shard of it cut to half, then resubmitted
  exhausted   rank 1 SIGKILLed at step 5 in two attempts with run.max_failures=1: exit 1, resubmitted
  driver      the driver SIGKILLed after step 5 (workers die with it), then the job resubmitted

A Ray worker node lost is measured where there are two Ray nodes, not here (one head):
tests/cluster/test_multinode.py::test_a_lost_worker_node_costs_at_most_the_steps_since_the_last_checkpoint
SIGKILLs the node holding one training worker mid-step 4, adds a replacement node, and prints
its row (pytest -s).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vlm_train.run_dir import RunDir  # noqa: E402
from vlm_train.testing.faults import FaultRow, attempts, fault_row, read_progress, table  # noqa: E402

CFG = "configs/debug/internvl_tiny_sft.yaml"
SAVE = 2
# The driver run is longer: its workers go on for a moment after it is killed, until Ray ends
# its job; they must not finish the stage in that moment (its first steps are compared).
DRIVER_STEPS = 4


class Bench:
    def __init__(self, storage: Path, gcs: str, dashboard: str, steps: int):
        self.storage, self.gcs, self.dashboard, self.steps = storage, gcs, dashboard, steps
        self.final: dict[str, list[float]] = {}

    def argv(self, name: str, *extra: str) -> list[str]:
        steps = self.steps * (DRIVER_STEPS if name == "driver" else 1)
        return [sys.executable, "-m", "jobs.sft", CFG, f"run.storage_path={self.storage}", f"run.name={name}",
                f"sft.max_steps={steps}", f"sft.save_steps={SAVE}", f"cluster.address={self.gcs}", *extra]

    def env(self, faults: str = "") -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "VLM_TRAIN_TEST_FAULTS"}
        if faults:
            env["VLM_TRAIN_TEST_FAULTS"] = faults
        return env

    def submit(self, name: str, *extra: str, faults: str = "") -> tuple[int, str, list[dict]]:
        """One driver run to its end: exit status, last error line, its progress records."""
        r = subprocess.run(self.argv(name, *extra), cwd=REPO, env=self.env(faults), capture_output=True, text=True, timeout=1200)
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        return r.returncode, (errors[-1] if errors else ""), read_progress(RunDir(self.storage / name), "sft")

    def history(self, name: str) -> list[float]:
        status = json.loads(RunDir(self.storage / name).stage_status("sft").read_text())
        assert status["complete"] and status["global_step"] == status["max_steps"], status
        return [e["loss"] for e in status["log_history"] if "loss" in e]

    def finish(self, name: str, progress: list[dict]):
        self.final[name] = self.history(name)
        return attempts(RunDir(self.storage / name), "sft", progress)

    # ---- the faults ------------------------------------------------------------------------
    def baseline(self) -> list[FaultRow]:
        rc, err, _ = self.submit("baseline")
        assert rc == 0, err
        self.final["baseline"] = self.history("baseline")
        return []

    def mid_step(self) -> list[FaultRow]:
        rc, err, progress = self.submit("mid_step", "run.max_failures=1", faults="step@3")
        assert rc == 0, err
        a = self.finish("mid_step", progress)
        return [fault_row("worker SIGKILLed mid-step 3", a[0], a[1], since_checkpoint=a[0].last_done % SAVE)]

    def save(self) -> list[FaultRow]:
        rc, err, progress = self.submit("save", "run.max_failures=1", faults="save@4:rank=0")
        assert rc == 0, err
        a = self.finish("save", progress)
        # Checkpoint 4 never became whole: the last whole one is the save before it.
        return [fault_row("worker SIGKILLed writing checkpoint 4", a[0], a[1], since_checkpoint=a[0].last_done - (4 - SAVE))]

    def truncated(self) -> list[FaultRow]:
        rc, err, progress = self.submit("truncated", "run.stop_at_step=4")
        assert rc == 3, (rc, err)
        shards = sorted((self.storage / "truncated" / "sft" / "checkpoint-000004").rglob("*optim_states.pt"),
                        key=lambda p: p.stat().st_size)
        data = shards[-1].read_bytes()
        shards[-1].write_bytes(data[: len(data) // 2])
        rc, err, more = self.submit("truncated")
        assert rc == 0, err
        a = self.finish("truncated", progress + more)
        return [fault_row("truncated shard in latest checkpoint 4", a[0], a[1], since_checkpoint=a[0].last_done - (4 - SAVE),
                          failed="stopped at 4, shard cut")]

    def exhausted(self) -> list[FaultRow]:
        rc, err, progress = self.submit("exhausted", "run.max_failures=1", faults="step@5:times=2")
        assert rc == 1, (rc, err)
        rc2, err2, more = self.submit("exhausted", "run.max_failures=1")
        assert rc2 == 0, err2
        a = self.finish("exhausted", progress + more)
        return [fault_row("worker SIGKILLed mid-step 5", a[0], a[1], since_checkpoint=a[0].last_done % SAVE),
                fault_row("the same again, max_failures=1 used up", a[1], a[2], since_checkpoint=a[1].last_done % SAVE,
                          failed=f"exit {rc}: {err[:90]}")]

    def driver(self) -> list[FaultRow]:
        run = RunDir(self.storage / "driver")
        proc = subprocess.Popen(self.argv("driver"), cwd=REPO, env=self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            if any(r["step"] >= 5 for r in read_progress(run, "sft")):
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before the driver could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        self.wait_workers_gone()
        progress = read_progress(run, "sft")  # the killed driver's attempt, every step its workers logged
        rc, err, more = self.submit("driver")
        assert rc == 0, err
        a = self.finish("driver", progress + more)
        return [fault_row("driver SIGKILLed after step 5", a[0], a[1], since_checkpoint=a[0].last_done % SAVE,
                          failed="driver gone")]

    def wait_workers_gone(self, timeout: float = 120) -> None:
        """The killed driver's training workers end with its job; resubmit after they have."""
        from ray.util.state import list_actors

        end = time.time() + timeout
        while time.time() < end:
            alive = list_actors(address=self.dashboard, filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")],
                                raise_on_missing_output=False)
            if not alive:
                return
            time.sleep(1)
        raise TimeoutError("the killed driver's workers are still alive")


FAULTS = ["mid_step", "save", "truncated", "exhausted", "driver"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--address", help="GCS address of a running Ray head (default: start one)")
    ap.add_argument("--dashboard", help="its dashboard URL (with --address)")
    ap.add_argument("--only", nargs="*", choices=FAULTS, default=FAULTS)
    ap.add_argument("--steps", type=int, default=8)
    a = ap.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cluster = None
    if a.address is None:
        from vlm_train.testing.ray_cluster import start_head

        cluster = start_head(num_cpus=2, ray_bin_dir=str(Path(sys.executable).parent))
        a.address, a.dashboard = cluster.gcs_address, cluster.dashboard_url
    rows: list[FaultRow] = []
    failed: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="vt_faults_") as tmp:
            bench = Bench(Path(tmp), a.address, a.dashboard, a.steps)
            t0 = time.perf_counter()
            bench.baseline()
            for name in a.only:
                t = time.perf_counter()
                try:
                    rows += getattr(bench, name)()
                except (AssertionError, IndexError, TimeoutError) as e:  # a fault the run did not survive: say so, go on
                    failed.append(name)
                    print(f"# {name}: FAILED: {str(e)[:400]}", flush=True)
                print(f"# {name}: {time.perf_counter() - t:.0f} s", flush=True)
            print(table(rows))
            base = bench.final["baseline"]
            for name in a.only:
                if name in bench.final:
                    same = bench.final[name][: len(base)] == base  # constant LR: a longer run's first steps match
                    print(f"{name}: final loss history of steps 1..{a.steps} {'equals' if same else 'DIFFERS from'} the uninterrupted run's")
            print(f"# total {time.perf_counter() - t0:.0f} s")
    finally:
        if cluster is not None:
            cluster.stop()
    return 0 if not failed and all(r.lost <= r.since_checkpoint for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
