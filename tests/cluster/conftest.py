"""Fixtures for cluster tests: a real single-host SLURM started for the test session, and a
user's checkout to run the documented commands in."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.cluster.local_slurm import LocalSlurm, ensure_installed


@pytest.fixture(scope="session")
def local_slurm(tmp_path_factory) -> LocalSlurm:
    """munged + slurmctld + slurmd on this host (installed from Debian packages when missing).

    The daemons run from a temp dir with their own config and ports and are stopped by pid
    at the end of the session.
    """
    why = ensure_installed()
    if why:
        pytest.skip(f"no SLURM here: {why}")
    # Short root: munge/slurm sockets live below it and unix socket paths are capped at 108 bytes.
    root = Path(os.environ.get("VLM_TRAIN_SLURM_TEST_ROOT", "/tmp")) / f"vt-slurm-{os.getpid()}"
    root.mkdir(parents=True, exist_ok=False)
    slurm = LocalSlurm(root, cpus=min(os.cpu_count() or 2, 2))
    try:
        slurm.start()
    except Exception:
        slurm.stop()
        raise
    yield slurm
    slurm.stop()
    # Keep the daemons' logs only when asked (debugging a failure).
    if not os.environ.get("VLM_TRAIN_KEEP_SLURM_LOGS"):
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def checkout(tmp_path_factory) -> Path:
    """A copy of the working tree, as a user's checkout: the documented commands write into it
    (slurm-<id>.out, runs/), so they run there rather than in the developer's tree."""
    dest = tmp_path_factory.mktemp("checkout") / "vlm_train"
    shutil.copytree(Path(__file__).resolve().parents[2], dest, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "__pycache__", "*.egg-info", ".pytest_cache", "slurm-*.out", "build"))
    return dest
