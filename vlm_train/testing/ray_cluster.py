"""A real Ray head on loopback for tests and demos: `ray start --head`, stopped by pid/temp dir.

Token auth (Ray 2.60) is set consistently: RAY_AUTH_MODE is exported to every client this
helper hands out, so `ray job submit` and `ray.init(address=...)` behave as on a cluster.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalRayCluster:
    gcs_address: str
    dashboard_url: str
    temp_dir: Path
    env: dict[str, str]

    def stop(self) -> None:
        """Stop this cluster's processes only (``ray stop`` would stop every Ray on the host)."""
        import psutil

        mine = []
        for p in psutil.process_iter(["pid", "cmdline"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if str(self.temp_dir) in cmd or self.gcs_address in cmd:
                mine.append(p)
        for p in mine:
            try:
                p.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(mine, timeout=15)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def start_head(num_cpus: int = 2, resources: str | None = None, ray_bin_dir: str | None = None) -> LocalRayCluster:
    """Start a head node on 127.0.0.1 with its own ports and (short) temp dir."""
    temp = Path(tempfile.mkdtemp(prefix="vt_ray_", dir="/tmp"))
    port, dash = free_port(), free_port()
    env = dict(os.environ)
    if ray_bin_dir:
        env["PATH"] = f"{ray_bin_dir}:{env['PATH']}"
    env["RAY_AUTH_MODE"] = env.get("RAY_AUTH_MODE", "disabled")
    cmd = [
        "ray", "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
        f"--num-cpus={num_cpus}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash}", f"--temp-dir={temp}", "--disable-usage-stats",
        # The dashboard agent's defaults (52365, ...) are taken by any other Ray on the host, and
        # a head without its agent answers every job submission "No available agent".
        f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
    ]
    if resources:
        cmd.append(f"--resources={resources}")
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=180)
    url = f"http://127.0.0.1:{dash}"
    deadline = time.time() + 60
    while time.time() < deadline:  # the job API comes up a little after `ray start` returns
        r = subprocess.run(["ray", "job", "list", "--address", url], env=env, capture_output=True, timeout=60)
        if r.returncode == 0:
            break
        time.sleep(1)
    env["RAY_ADDRESS"] = f"127.0.0.1:{port}"
    return LocalRayCluster(f"127.0.0.1:{port}", url, temp, env)
