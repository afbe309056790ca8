"""Secrets stay out of every artefact: config.yaml, dry runs, train_loop_config, sbatch, manifests."""

from __future__ import annotations

import pytest
import yaml

from tests.cluster.helpers import POOLS_DIR, REPO, write_config
from vlm_train.config import ConfigError, dump_config, load_config
from vlm_train.redact import is_secret_key, redact

SECRETS = ("hf_SeCrEt123", "pw-ZZZ", "apikey-QQQ", "authval-RRR", "s3cr3t-pass")


def _config(tmp_path):
    return write_config(
        tmp_path,
        "sec",
        sft={"hub_token": SECRETS[0], "pad_token": "<pad>", "average_tokens_across_devices": True, "max_steps": 2},
        cluster={"address": f"ray://admin:{SECRETS[4]}@head:10001"},
    )


def test_key_patterns():
    for k in ("hub_token", "HF_TOKEN", "db_password", "passwd", "wandb_api_key", "apiKey", "key", "auth",
              "aws_credentials", "client_secret"):
        assert is_secret_key(k), k
    for k in ("pad_token", "eos_token", "average_tokens_across_devices", "secretName", "RAY_AUTH_TOKEN_PATH",
              "authOptions", "tokenizer", "max_length", "run.name"):
        assert not is_secret_key(k), k
    tree = {"x": {"passwd": SECRETS[1], "api_key": SECRETS[2], "auth": SECRETS[3]}, "u": [f"https://me:{SECRETS[4]}@h/p"]}
    assert not any(s in str(redact(tree)) for s in SECRETS)


def test_no_secret_in_config_yaml_dry_run_or_train_loop_config(tmp_path, monkeypatch, capsys):
    path = _config(tmp_path)
    cfg = load_config(path)
    saved = dump_config(cfg)
    assert not any(s in saved for s in SECRETS)
    back = yaml.safe_load(saved)
    assert back["sft"]["pad_token"] == "<pad>" and back["sft"]["average_tokens_across_devices"] is True
    assert back["cluster"]["address"] == "ray://***@head:10001"

    from vlm_train.launch.cli import parse

    with pytest.raises(SystemExit) as e:
        parse([str(path), "--dry-run"], "sft", "")
    out = capsys.readouterr().out
    assert e.value.code == 0 and "pad_token" in out and not any(s in out for s in SECRETS)

    # What Ray stores and shows: the train_loop_config of the TorchTrainer.
    import ray.train.torch

    from vlm_train.launch import trainer as launch_trainer

    seen = {}

    class Trainer:
        def __init__(self, loop, **kw):
            seen.update(kw)

        def fit(self):
            return None

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", Trainer)
    monkeypatch.setattr(launch_trainer, "connect_ray", lambda *a: None)
    launch_trainer.run_stage(cfg, "sft")
    job = seen["train_loop_config"]["job"]
    assert "hub_token" not in job["sft"] and job["sft"]["pad_token"] == "<pad>"
    assert not any(s in str(seen["train_loop_config"]) for s in SECRETS)
    assert not any(s in cfg.run_dir.config.read_text() for s in SECRETS)


@pytest.mark.parametrize("override", [f"sft.hub_token={SECRETS[0]}", f"sft.wandb_api_key={SECRETS[2]}",
                                      f"cluster.address=ray://u:{SECRETS[4]}@h:10001", f"grpo.db_passwd={SECRETS[1]}"])
def test_secret_override_is_refused(tmp_path, override, capsys):
    path = write_config(tmp_path, "sec")
    with pytest.raises(ConfigError, match="environment variable") as e:
        load_config(path, [override])
    assert not any(s in str(e.value) for s in SECRETS)

    # The cluster front ends reject it the same way, before printing or submitting anything.
    from vlm_train.cli import main as vlm_main

    rc = vlm_main(["slurm", "submit", str(path), "--pool", "h100-80gb", "--nodes", "1", f"cluster.pools_dir={POOLS_DIR}",
                   override, "--dry-run"])
    out, err = capsys.readouterr()
    assert rc == 2 and "environment variable" in err and not any(s in out + err for s in SECRETS)


def test_sbatch_and_manifests_carry_no_secret(tmp_path, monkeypatch, capsys):
    from vlm_train.cli import main as vlm_main

    path = _config(tmp_path)
    rc = vlm_main(["slurm", "submit", str(path), "--pool", "h100-80gb", "--nodes", "1", f"cluster.pools_dir={POOLS_DIR}",
                   f"--sbatch-arg=--export=ALL,HF_TOKEN={SECRETS[0]}", "--dry-run"])
    out, err = capsys.readouterr()
    assert rc == 2 and "--sbatch-arg" in err and not any(s in out + err for s in SECRETS)
    rc = vlm_main(["slurm", "submit", str(path), "--pool", "h100-80gb", "--nodes", "1", f"cluster.pools_dir={POOLS_DIR}",
                   "--dry-run"])
    out, err = capsys.readouterr()
    assert rc == 0 and "#SBATCH --nodes=1" in out and not any(s in out + err for s in SECRETS)

    monkeypatch.chdir(REPO)
    cfg = write_config(tmp_path, "job", cluster={"pool": "l40s-48gb", "pools_dir": str(POOLS_DIR), "nodes": 1})
    rc = vlm_main(["cluster", "render", "--pools", str(POOLS_DIR), "--format", "kuberay-rayjob", "--config", str(cfg),
                   f"--image=https://bot:{SECRETS[1]}@registry.example/vlm:1"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert not any(s in out for s in SECRETS) and "https://***@registry.example/vlm:1" in out
    rc = vlm_main(["cluster", "render", "--pools", str(POOLS_DIR), "--format", "kuberay-rayjob", "--config", str(cfg),
                   f"sft.hub_token={SECRETS[0]}"])
    out, err = capsys.readouterr()
    assert rc == 2 and "environment variable" in err and SECRETS[0] not in out + err
