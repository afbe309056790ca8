"""Talking to a running Ray cluster through its dashboard: wait for nodes, submit and follow a job.

Used by the SLURM wrapper (cluster/slurm/vlm_train.sbatch) through
``python -m vlm_train.cluster.wrapper_helper``. The job API needs ``ray[default]``; token auth
(RAY_AUTH_MODE=token plus RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH) is read from the environment by
Ray's client, so the caller only has to export the same variables the nodes were started with.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

from vlm_train.redact import redact_text


class ClusterStartError(RuntimeError):
    """The Ray cluster did not come up (a node runtime died, or nodes never joined)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def alive_nodes(dashboard: str) -> list[Any]:
    """Alive nodes as seen by the dashboard's state API (raises while it is not up yet)."""
    from ray.util.state import list_nodes

    return list_nodes(address=dashboard, filters=[("state", "=", "ALIVE")], raise_on_missing_output=False)


def wait_for_nodes(dashboard: str, nodes: int, timeout_s: float, watch_pids: Iterable[int] = (), log: TextIO = sys.stderr) -> list[Any]:
    """Block until ``nodes`` nodes are alive in the cluster behind ``dashboard``.

    Args:
        dashboard: Dashboard URL of the head, e.g. ``http://10.0.0.1:8265``.
        nodes: How many nodes must have joined (head included).
        timeout_s: Give up after this many seconds.
        watch_pids: Local pids of the node runtimes (their ``srun`` steps); if one exits,
            the cluster cannot complete and waiting stops at once.
        log: Where progress goes.

    Returns:
        The alive nodes.

    Raises:
        ClusterStartError: A watched process exited, or the timeout passed.
    """
    pids = list(watch_pids)
    end = time.monotonic() + timeout_s
    seen, last_err = -1, ""
    while True:
        dead = [p for p in pids if not _pid_alive(p)]
        if dead:
            raise ClusterStartError(f"node runtime process(es) {dead} exited before all {nodes} nodes joined")
        try:
            found = alive_nodes(dashboard)
            if len(found) != seen:
                seen = len(found)
                print(f"[vlm-train] {seen}/{nodes} Ray nodes alive", file=log, flush=True)
            if seen >= nodes:
                return found
        except Exception as e:  # the dashboard is still starting: connection refused / 5xx
            last_err = f"{type(e).__name__}: {e}"
        if time.monotonic() > end:
            why = f"; last error: {last_err}" if seen < 0 else ""
            raise ClusterStartError(f"only {max(seen, 0)}/{nodes} Ray nodes joined within {timeout_s:.0f}s{why}")
        time.sleep(1.0)


def submit_and_follow(
    dashboard: str,
    entrypoint: str,
    submission_id: str,
    runtime_env: dict[str, Any] | None = None,
    entrypoint_resources: dict[str, float] | None = None,
    entrypoint_num_cpus: float | None = None,
    entrypoint_num_gpus: float | None = None,
    out: TextIO = sys.stdout,
    submit_timeout_s: float = 120.0,
) -> int:
    """Submit ``entrypoint`` as a Ray job, stream its log to ``out``, return its exit status.

    Unlike ``ray job submit`` (which exits 1 for any failure), the driver's own exit code is
    returned, so a wrapper can propagate it (e.g. a job's "stopped at step" status).

    Returns:
        The driver's exit code; 1 if the job failed without one (e.g. runtime_env setup);
        143 if it was stopped.
    """
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(dashboard)
    _submit_with_retry(client, submit_timeout_s, entrypoint=entrypoint, submission_id=submission_id,
                       runtime_env=runtime_env, entrypoint_resources=entrypoint_resources or None,
                       entrypoint_num_cpus=entrypoint_num_cpus, entrypoint_num_gpus=entrypoint_num_gpus)
    print(f"[vlm-train] submitted Ray job {submission_id}: {redact_text(entrypoint)}", file=out, flush=True)

    async def follow() -> None:
        async for chunk in client.tail_job_logs(submission_id):
            out.write(chunk)
            out.flush()

    try:
        asyncio.run(follow())
    except Exception as e:  # the log stream can drop (head busy); the status below still decides
        print(f"[vlm-train] log stream ended: {type(e).__name__}: {e}", file=out, flush=True)
    while True:
        info = client.get_job_info(submission_id)
        if info.status.is_terminal():
            break
        time.sleep(1.0)
    print(f"[vlm-train] Ray job {submission_id} {info.status}: {info.message or ''}".rstrip(), file=out, flush=True)
    if info.status == JobStatus.SUCCEEDED:
        return 0
    if info.status == JobStatus.STOPPED:
        return 143
    code = info.driver_exit_code
    return int(code) if code not in (None, 0) else 1


def _submit_with_retry(client: Any, timeout_s: float, **kw: Any) -> None:
    """Submit, retrying while the head's job agent is still starting (it lags the node by seconds).

    A retry after a lost reply must not start the job twice: if the submission id is already
    known, the earlier attempt went through.
    """
    end = time.monotonic() + timeout_s
    while True:
        try:
            client.submit_job(**kw)
            return
        except Exception as e:
            try:
                client.get_job_info(kw["submission_id"])
                return  # the earlier attempt created it
            except Exception:
                pass
            if time.monotonic() > end:
                raise RuntimeError(f"cannot submit the job within {timeout_s:.0f}s: {e}") from e
            time.sleep(2.0)


def stop_job(dashboard: str, submission_id: str) -> bool:
    """Ask Ray to stop a job; False when it is unknown or already finished."""
    from ray.job_submission import JobSubmissionClient

    try:
        return bool(JobSubmissionClient(dashboard).stop_job(submission_id))
    except Exception:
        return False
