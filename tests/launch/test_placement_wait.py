"""cluster.placement_timeout_s: a stage whose workers the cluster cannot hold fails, in time,
naming what it asked for and what the cluster has (Ray Train alone would retry forever)."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.slow


def test_unplaceable_workers_fail_with_the_ask_and_the_cluster(repo, ray_cluster, tmp_path, monkeypatch, capsys):
    from jobs import sft

    monkeypatch.chdir(repo)
    t0 = time.monotonic()
    # local-cpu x 2 nodes = 4 workers x 1 CPU; the session's head has 2 CPUs.
    rc = sft.main(["configs/debug/internvl_tiny_sft.yaml", "cluster.nodes=2", "cluster.placement_timeout_s=3",
                   f"run.storage_path={tmp_path}", f"cluster.address={ray_cluster.gcs_address}"])
    took = time.monotonic() - t0
    err = capsys.readouterr().err
    assert rc == 1, err[-3000:]
    assert "cluster.placement_timeout_s" in err and "4 worker(s) x {CPU: 1}" in err and "within 3 s" in err, err[-3000:]
    assert "{CPU: 2}" in err and "on 1 node(s)" in err  # what the cluster has
    print(f"placement timeout: failed after {took:.1f}s (3 s bound, data prep and tiny model included)")
    assert took < 120
    assert not (tmp_path / "internvl_tiny_sft" / "sft").exists()  # Ray Train never started
