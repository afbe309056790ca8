"""A throw-away single-host SLURM for tests: munged + slurmctld + slurmd on this machine.

Everything lives in one temp directory (config, munge key and socket, state, spool, logs),
the daemons listen on non-default ports, and they are stopped by pid, so a test never
touches a system SLURM or another user's daemons. Needs root (the CI machines are root)
and the Debian packages slurm-wlm and munge (cluster/slurm/install_local_slurm.sh).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from vlm_train.testing.ray_cluster import free_port

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / "cluster" / "slurm" / "install_local_slurm.sh"



def _real_memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            # slurmd drains a node whose RealMemory exceeds what it finds: stay below it.
            return int(int(line.split()[1]) / 1024 * 0.9)
    raise RuntimeError("no MemTotal in /proc/meminfo")


@dataclass
class LocalSlurm:
    root: Path
    cpus: int = 2
    node: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    procs: dict[str, int] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """Environment for client commands (sbatch, squeue, ...) talking to this SLURM."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def write_config(self) -> None:
        for d in ("state", "spool", "log", "munge"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o700)
        r = self.root
        lines = [
            "ClusterName=vlmtest",
            f"SlurmctldHost={self.node}",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={r / 'munge' / 'munge.socket'}",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
            # No cgroups on these machines (and none needed for one host).
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "SchedulerType=sched/backfill",
            "ReturnToService=2",
            # Keep finished jobs visible to `scontrol show job` long enough to assert on them.
            "MinJobAge=3600",
            "KillWait=30",
            "SlurmdTimeout=300",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={_real_memory_mb()} State=UNKNOWN",
            f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO",
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        # An empty cgroup.conf stops slurmd looking for the system one.
        (self.root / "cgroup.conf").write_text("")
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o600)

    def _spawn(self, name: str, argv: list[str], pidfile: Path | None = None) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.procs[name] = p.pid

    def start(self, timeout: float = 60.0) -> None:
        """Start munged, slurmctld and slurmd in the foreground-mode (we own their pids)."""
        self.write_config()
        m = self.root / "munge"
        self._spawn("munged", [
            "munged", "--foreground", "--force", f"--socket={m / 'munge.socket'}", f"--key-file={m / 'munge.key'}",
            f"--log-file={m / 'munged.log'}", f"--pid-file={m / 'munged.pid'}", f"--seed-file={m / 'munged.seed'}",
        ])
        self._wait(lambda: (m / "munge.socket").exists(), timeout, "munged socket")
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
        self._wait(lambda: self.run(["scontrol", "ping"], check=False).returncode == 0, timeout, "slurmctld ping")
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", self.node])
        self._wait(self._node_idle, timeout, "node idle in sinfo")

    def _node_idle(self) -> bool:
        out = self.run(["sinfo", "-h", "-N", "-o", "%T"], check=False).stdout.strip()
        return out.startswith("idle")

    def _wait(self, ok, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for name, pid in self.procs.items():
                if not _alive(pid):
                    raise RuntimeError(f"{name} exited while waiting for {what}; logs in {self.root / 'log'}:\n{self.logs()}")
            if ok():
                return
            time.sleep(0.5)
        raise TimeoutError(f"timed out waiting for {what}; logs:\n{self.logs()}")

    def logs(self, tail: int = 40) -> str:
        out = []
        for p in sorted((self.root / "log").glob("*")) + [self.root / "munge" / "munged.log"]:
            if p.is_file():
                out.append(f"== {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-tail:]))
        return "\n".join(out)

    def run(self, argv: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=kw.pop("env", self.env), capture_output=True, text=True, check=check, **kw)

    def sbatch(self, argv: list[str], cwd: str | Path | None = None, env: dict[str, str] | None = None) -> int:
        """Submit; return the job id."""
        r = self.run(["sbatch", "--parsable", *argv], check=False, cwd=cwd, env={**self.env, **(env or {})})
        if r.returncode != 0:
            raise RuntimeError(f"sbatch failed ({r.returncode}): {r.stderr}")
        return int(r.stdout.strip().split(";")[0])

    def job_info(self, job_id: int) -> dict[str, str]:
        out = self.run(["scontrol", "show", "job", "-o", str(job_id)]).stdout
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def state(self, job_id: int) -> str:
        return self.job_info(job_id).get("JobState", "UNKNOWN")

    def wait(self, job_id: int, timeout: float, states: tuple[str, ...] | None = None) -> str:
        """Wait until the job reaches one of ``states`` (default: any terminal state)."""
        terminal = states or ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "PREEMPTED")
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            s = self.state(job_id)
            if s in terminal:
                return s
            time.sleep(1.0)
        raise TimeoutError(f"job {job_id} still {self.state(job_id)} after {timeout}s")

    def stop(self) -> None:
        """Stop the daemons this object started (by pid): slurmd, slurmctld, then munged."""
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.procs.pop(name, None)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            end = time.monotonic() + 15
            while _alive(pid) and time.monotonic() < end:
                time.sleep(0.2)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
            _reap(pid)


def _alive(pid: int) -> bool:
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def ensure_installed() -> str | None:
    """Install slurm + munge when missing; return None, or why SLURM can't be used here."""
    if all(shutil.which(b) for b in ("sbatch", "slurmctld", "slurmd", "munged")):
        return None
    if os.geteuid() != 0:
        return "slurm-wlm/munge not installed and not root"
    r = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{INSTALL_SCRIPT} failed:\n{r.stdout}\n{r.stderr}")
    return None
