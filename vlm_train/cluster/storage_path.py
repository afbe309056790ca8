"""Where a relative ``run.storage_path`` may be resolved, and where it must be refused.

A driver started by ``ray job submit`` runs in Ray's unpacked copy of the job's working_dir
(``<ray temp>/session_*/runtime_resources/working_dir_files/_ray_pkg_<hash>/``), on the head or
any node, and Ray deletes that copy when the runtime environment is garbage-collected.  The job
is not told where it was submitted from (the package is named by its content hash), so a
relative path has no right answer there: it is refused with the absolute path to set instead.
Outside a Ray job the driver's working directory is the user's, and the path resolves against it.

Ray sets ``RAY_JOB_CONFIG_JSON_ENV_VAR`` in the environment of every job driver it starts
(ray/dashboard/modules/job/job_supervisor.py, Ray 2.60), which is what identifies one here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from vlm_train.config_base import ConfigError

RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def ray_job_working_dir(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> str | None:
    """If this process is a Ray job driver, a description of its working dir; else None."""
    env = os.environ if env is None else env
    if RAY_JOB_ENV not in env:
        return None
    cwd = Path.cwd() if cwd is None else cwd
    try:
        runtime_env = json.loads(env[RAY_JOB_ENV]).get("runtime_env") or {}
    except (ValueError, AttributeError):
        runtime_env = {}
    if runtime_env.get("working_dir") or "runtime_resources" in cwd.parts:
        return f"Ray's temporary copy of the job's working_dir ({cwd}), deleted when the job's runtime environment is cleaned up"
    return f"the Ray job agent's directory on the node running the driver ({cwd}), not the submitter's"


def check_storage_path(path: str, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
    """Refuse a relative ``run.storage_path`` inside a Ray job (raises ConfigError, exit 2)."""
    if Path(path).expanduser().is_absolute():
        return
    where = ray_job_working_dir(env, cwd)
    if where is None:
        return
    raise ConfigError(
        "run.storage_path",
        f"{path!r} is relative, and this job runs as a Ray job: it would resolve into {where}. "
        "Set an absolute path on storage every node sees, e.g. run.storage_path=/mnt/storage/runs "
        "(from a shell on shared storage: run.storage_path=$PWD/runs)",
    )
