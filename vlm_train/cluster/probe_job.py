"""A cluster smoke test that runs like a training job: ``python -m vlm_train.cluster.probe_job CONFIG [k=v ...]``.

It reads the same config as jobs/sft.py, connects to the same Ray (RAY_ADDRESS, set by
``ray job submit``, or ``cluster.address``), reserves the job's placement (one bundle per
training worker with the pool's resources), runs one task in each bundle and writes
``<run dir>/probe.json`` with where each landed. Use it to check a new SLURM / KubeRay setup in
seconds before spending GPU hours; ``VLM_TRAIN_PROBE_SLEEP_S`` keeps it running (to test
cancellation).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time


def _where() -> dict[str, object]:
    import ray

    ctx = ray.get_runtime_context()
    return {"node_id": ctx.get_node_id(), "host": socket.gethostname(), "pid": os.getpid()}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: python -m vlm_train.cluster.probe_job CONFIG [key=value ...]", file=sys.stderr)
        return 2
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from vlm_train.cluster.pools import load_pool, placement_for
    from vlm_train.config import ConfigError, load_config

    try:
        cfg = load_config(argv[0], argv[1:], check_trl=False)
        placement = placement_for(load_pool(cfg.cluster.pool, cfg.cluster.pools_dir), cfg.cluster.nodes, cfg.cluster.workers_per_node)
    except ConfigError as e:
        print(f"probe_job: {e}", file=sys.stderr)
        return 2
    address = os.environ.get("RAY_ADDRESS") or cfg.cluster.address
    if not address:
        print("probe_job: needs a running cluster (RAY_ADDRESS or cluster.address)", file=sys.stderr)
        return 2
    ray.init(address=address, log_to_driver=False)
    bundles = placement.bundles()
    timeout_s = cfg.cluster.placement_timeout_s or 120.0
    pg = placement_group(bundles, strategy="PACK")
    if not pg.wait(timeout_seconds=timeout_s):
        print(f"probe_job: cannot place {len(bundles)} x {bundles[0]} within {timeout_s:g} s; cluster has {ray.cluster_resources()}", file=sys.stderr)
        return 1
    task = ray.remote(_where)
    refs = [
        task.options(num_cpus=0, scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i)).remote()
        for i in range(len(bundles))
    ]
    workers = ray.get(refs)
    remove_placement_group(pg)
    alive = [n for n in ray.nodes() if n["Alive"]]
    report = {
        "pool": placement.pool.name,
        "nodes_alive": len(alive),
        "workers": workers,
        "worker_nodes": sorted({w["node_id"] for w in workers}),
        "cluster_resources": ray.cluster_resources(),
    }
    cfg.run_dir.root.mkdir(parents=True, exist_ok=True)
    cfg.run_dir.probe.write_text(json.dumps(report, indent=2))
    print(f"probe_job: {len(workers)} workers on {len(report['worker_nodes'])} node(s); wrote {cfg.run_dir.probe}", flush=True)
    sleep_s = float(os.environ.get("VLM_TRAIN_PROBE_SLEEP_S", "0"))
    if sleep_s > 0:
        print(f"probe_job: sleeping {sleep_s:.0f}s", flush=True)
        time.sleep(sleep_s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
