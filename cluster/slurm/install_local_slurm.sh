#!/usr/bin/env bash
# Install a single-host SLURM (slurm-wlm: slurmctld + slurmd + client tools) and munge from
# Debian packages when they are missing. Used by tests/cluster/test_slurm.py and .ci/run.
# Needs root (CI machines); installs nothing when sbatch, slurmctld, slurmd and munged exist.
set -euo pipefail

have_all() {
    command -v sbatch >/dev/null && command -v slurmctld >/dev/null \
        && command -v slurmd >/dev/null && command -v munged >/dev/null
}

if have_all; then
    echo "install_local_slurm: slurm and munge already installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install_local_slurm: slurm/munge missing and not root; install slurm-wlm and munge" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# slurm-wlm pulls slurmctld, slurmd and slurm-client; munge authenticates them to each other.
apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
have_all || { echo "install_local_slurm: packages installed but binaries missing" >&2; exit 1; }
echo "install_local_slurm: installed slurm-wlm $(dpkg-query -W -f '${Version}' slurm-wlm)"
