#!/usr/bin/env bash
# One Ray runtime on one node of a SLURM allocation; started by vlm_train.sbatch as one srun task
# per node.  Usage: ray_node.sh head|worker HEAD_IP
# Reads the per-job settings the wrapper exports (VT_* ports, temp dir, pool options) and stays
# in the foreground (`ray start --block`) so that SLURM owns the runtime: when the step is
# signalled, Ray stops; anything of this job's Ray left on the node afterwards is killed by pid.
set -uo pipefail
role=${1:?usage: ray_node.sh head|worker HEAD_IP}
head_ip=${2:?usage: ray_node.sh head|worker HEAD_IP}
ray_bin=${VT_RAY:?VT_RAY not set (run me from vlm_train.sbatch)}

cpus=${SLURM_CPUS_ON_NODE:-$(nproc)}
args=(start --block --disable-usage-stats --temp-dir="$VT_RAY_TMPDIR" --num-cpus="$cpus"
      --node-manager-port="$VT_PORT_NODE_MANAGER" --object-manager-port="$VT_PORT_OBJECT_MANAGER"
      --metrics-export-port="$VT_PORT_METRICS" --dashboard-agent-grpc-port="$VT_PORT_AGENT_GRPC"
      --dashboard-agent-listen-port="$VT_PORT_AGENT_HTTP" --runtime-env-agent-port="$VT_PORT_RUNTIME_ENV"
      --min-worker-port="$VT_PORT_WORKER_MIN" --max-worker-port="$VT_PORT_WORKER_MAX")
# GPUs: what SLURM granted on this node; without a GPU grant Ray detects them itself
# (honouring CUDA_VISIBLE_DEVICES), which is 0 on CPU nodes.
if [ -n "${SLURM_GPUS_ON_NODE:-}" ]; then
    args+=(--num-gpus="$SLURM_GPUS_ON_NODE")
fi
if [ -n "${VT_OBJECT_STORE_BYTES:-}" ]; then
    args+=(--object-store-memory="$VT_OBJECT_STORE_BYTES")
fi
# Pool membership (custom resources, labels), computed from the pool spec by the wrapper.
if [ -n "${VT_RAY_NODE_ARGS_STR:-}" ]; then
    eval "pool_args=($VT_RAY_NODE_ARGS_STR)"
    args+=("${pool_args[@]}")
fi
if [ "$role" = head ]; then
    args+=(--head --node-ip-address="$head_ip" --port="$VT_PORT_GCS"
           --include-dashboard=true --dashboard-host="$VT_DASHBOARD_HOST" --dashboard-port="$VT_PORT_DASHBOARD"
           --ray-client-server-port="$VT_PORT_CLIENT")
else
    args+=(--address="$head_ip:$VT_PORT_GCS")
fi

reap() {
    # Ray processes of this job on this node carry VT_RAY_JOB=<job id> in their environment
    # (set just below, inherited by raylet and its workers): kill those that outlived
    # `ray start`, by pid, and nothing else.
    local env pid
    for env in /proc/[0-9]*/environ; do
        pid=${env#/proc/}; pid=${pid%/environ}
        [ "$pid" = "$$" ] && continue
        if tr '\0' '\n' 2>/dev/null < "$env" | grep -qx "VT_RAY_JOB=$VT_RAY_JOB_TAG"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

child=
stopping=
on_signal() {
    stopping=1
    [ -n "$child" ] && kill -TERM "$child" 2>/dev/null
}
trap on_signal TERM INT

echo "[vlm-train] $(hostname -s): ray ${args[*]}"
VT_RAY_JOB="$VT_RAY_JOB_TAG" "$ray_bin" "${args[@]}" &
child=$!
# `wait` returns early when a trapped signal arrives: keep waiting until ray start is gone.
while kill -0 "$child" 2>/dev/null; do
    wait "$child"
    rc=$?
done
wait "$child" 2>/dev/null; rc=${rc:-$?}
reap
rm -rf "$VT_RAY_TMPDIR"
# Stopped on request (teardown, scancel): that is success for this step.
[ -n "$stopping" ] && exit 0
exit "$rc"
