"""Bound how long a stage waits for its workers' resources (``cluster.placement_timeout_s``).

Ray Train 2.60 waits ``RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S`` (default 60 s) for a worker
group's placement group, then treats the timeout as a retryable controller failure, and
``FailureConfig.controller_failure_limit`` defaults to -1: on a cluster that can never hold the
group the job retries forever, logging only "Attempting to start training worker group".
Reserving the same bundles first (same resources, PACK) with a deadline turns that into one
error naming what was asked and what the cluster has.  The reservation is released at once;
an autoscaler sees it as demand and adds nodes while it waits.
"""

from __future__ import annotations

import logging
import time

from vlm_train.cluster.pools import Placement

log = logging.getLogger("vlm_train")


class PlacementTimeoutError(RuntimeError):
    """The cluster did not offer the workers' resources within ``cluster.placement_timeout_s``."""


def _fmt(res: dict[str, float]) -> str:
    keep = {k: v for k, v in sorted(res.items()) if not k.startswith("node:") and k not in ("memory", "object_store_memory")}
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in keep.items()) + "}"


def wait_for_placement(p: Placement, timeout_s: float | None) -> float:
    """Reserve ``p``'s bundles on the connected Ray cluster, wait up to ``timeout_s``, release.

    Returns:
        Seconds it took (0 when ``timeout_s`` is None: no bound, Ray Train waits on its own).

    Raises:
        PlacementTimeoutError: not placed in time; the message has the request and the cluster's
            total and available resources.
    """
    if timeout_s is None:  # wait as long as Ray Train does (forever): nothing to bound
        return 0.0
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    bundles = p.bundles()
    t0 = time.monotonic()
    pg = placement_group(bundles, strategy="PACK")
    try:
        ready = pg.wait(timeout_seconds=timeout_s)
    finally:
        remove_placement_group(pg)
    took = time.monotonic() - t0
    if not ready:
        alive = sum(1 for n in ray.nodes() if n.get("Alive"))
        raise PlacementTimeoutError(
            f"cluster.placement_timeout_s: {len(bundles)} worker(s) x {_fmt(bundles[0])} (PACK, pool {p.pool.name!r}, "
            f"{p.nodes} node(s) x {p.workers_per_node}) could not be placed within {timeout_s:g} s; the cluster has "
            f"{_fmt(ray.cluster_resources())} in total, {_fmt(ray.available_resources())} free, on {alive} node(s)"
        )
    log.info("placement of %d worker(s) ready in %.1fs", len(bundles), took)
    return took
