"""Real multi-node Ray on one host: several `ray start --block` runtimes, each its own "node".

Each runtime is a child process of the test; stopping it is a SIGTERM to that pid (`ray
start --block` then stops everything it started), never `ray stop`, which would also stop
other users' Ray on the machine.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from vlm_train.testing.ray_cluster import free_port

RAY = str(Path(sys.executable).parent / "ray")



@dataclass
class LocalMultiNode:
    root: Path
    env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen] = field(default_factory=list)
    gcs_port: int = 0
    dashboard_port: int = 0

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        token = self.root / "token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token),
            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "1",
        }
        self.env.pop("RAY_ADDRESS", None)
        self._worker_ports = random.randrange(20000, 29000, 200)

    def _node_ports(self) -> list[str]:
        lo = self._worker_ports + 50 * len(self.procs)
        return [
            f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
            f"--metrics-export-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
            f"--min-worker-port={lo}", f"--max-worker-port={lo + 49}",
        ]

    def add_node(self, num_cpus: int, extra: list[str] = ()) -> None:
        """The first call starts the head; later calls join worker runtimes to it."""
        args = [RAY, "start", "--block", "--disable-usage-stats", f"--temp-dir={self.root / 'ray'}", f"--num-cpus={num_cpus}",
                "--object-store-memory=150000000", *self._node_ports(), *extra]
        if not self.procs:
            self.gcs_port, self.dashboard_port = free_port(), free_port()
            args += ["--head", "--node-ip-address=127.0.0.1", f"--port={self.gcs_port}", "--include-dashboard=true",
                     "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}", f"--ray-client-server-port={free_port()}"]
        else:
            args += [f"--address=127.0.0.1:{self.gcs_port}"]
        log = open(self.root / f"node{len(self.procs)}.log", "ab")
        self.procs.append(subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT))

    def helper(self, *args: str, timeout: float = 900, cwd: Path | None = None) -> subprocess.CompletedProcess:
        """Run ``python -m vlm_train.cluster.wrapper_helper ARGS`` as a client of this cluster."""
        return subprocess.run([sys.executable, "-m", "vlm_train.cluster.wrapper_helper", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout, cwd=cwd)

    def helper_popen(self, *args: str, cwd: Path | None = None) -> subprocess.Popen:
        """``helper`` in the background (stdout and stderr to pipes, text)."""
        return subprocess.Popen([sys.executable, "-m", "vlm_train.cluster.wrapper_helper", *args], env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)

    def kill_node(self, index: int) -> set[int]:
        """Lose node ``index`` the way a machine is lost: SIGKILL, at once, of its ``ray start``
        and every process under it (raylet, agents, workers); no drain, nothing cleaned up.
        Returns the pids killed. Never the head (index 0): it holds the cluster."""
        import psutil

        assert index > 0, "the head is the cluster"
        top = psutil.Process(self.procs[index].pid)
        procs = [top, *top.children(recursive=True)]
        for p in procs:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=30)
        self.procs[index].wait()
        return {p.pid for p in procs}

    def python(self, code: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True, timeout=timeout)

    def stop(self) -> None:
        """Workers first, then the head: a worker drains through the head's GCS on SIGTERM."""
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()
