"""`python -m jobs.evaluate`: named sets (RefCOCO-format JSONL and synthetic) sharded over two Ray
workers, merged in order, scored, written (report, predictions, TensorBoard), printed."""

from __future__ import annotations

import json

import pytest
import torch

from jobs import evaluate as job
from vlm_train.config import ModelConfig
from vlm_train.data import synthetic
from vlm_train.eval.grounding import generate_texts
from vlm_train.models import get_family
from vlm_train.models.base import InputsConfig
from vlm_train.testing.checks import tb_image_tags, tb_scalars

CFG = "configs/debug/internvl_tiny_evaluate.yaml"


def refcoco_file(tmp_path, family):
    """A RefCOCO-format JSONL (pixels boxes, sizes) over synthetic images."""
    samples = synthetic.generate(tmp_path / "rc", 5, seed=21, image_size=64, answer=family.grounding_answer)
    rows = [{"image": s.messages[0].content[0].media, "sent": s.targets[0].phrase, "bbox": s.targets[0].box.as_list(),
             "width": 64, "height": 64, "id": f"rc{i}"} for i, s in enumerate(samples)]
    path = tmp_path / "rc" / "refcoco_val.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow
def test_evaluate_job_on_ray(repo, ray_cluster, tiny_internvl, tmp_path, monkeypatch, capsys):
    family = get_family("internvl")
    rc = refcoco_file(tmp_path, family)
    monkeypatch.chdir(repo)
    out = tmp_path / "eval"
    sets = (f"evaluation.sets=[{{name: refcoco_val, path: {rc}, format: refcoco}}, "
            "{name: synthetic, synthetic: {n_eval: 6, seed: 11, image_size: 64, max_shapes: 3}}]")
    args = [CFG, f"model.path={tiny_internvl}", sets, f"evaluation.out={out}", "evaluation.batch_size=1",
            f"cluster.address={ray_cluster.gcs_address}", f"run.storage_path={tmp_path}"]
    assert job.main(args) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["workers"] == 2 and list(report["sets"]) == ["refcoco_val", "synthetic"]
    assert "refcoco_val" in printed and "Acc@0.5" in printed and str(out / "report.json") in printed
    rcs, syn = report["sets"]["refcoco_val"], report["sets"]["synthetic"]
    assert rcs["n"] == 5 and syn["n"] == 6
    assert rcs["random_shape_baseline"] is None and "named_share" not in rcs and rcs["named_shape_share"] is None
    assert 0.0 <= syn["random_shape_baseline"] <= 1.0 and "named_share" in syn and syn["by_shapes"]
    # The merged predictions are in file order and equal one process generating them all.
    model, proc = family.load(ModelConfig(path=str(tiny_internvl)), dtype=torch.float32)
    lines = [json.loads(x) for x in (out / "predictions" / "refcoco_val.jsonl").read_text().splitlines()]
    assert [p["id"] for p in lines] == [f"rc{i}" for i in range(5)]
    from vlm_train.data.formats import read
    from vlm_train.data.formats.base import ReadOptions

    samples = list(read(rc, "refcoco", ReadOptions(answer=family.grounding_answer, prompt=family.grounding_prompt)))
    local = generate_texts(model.eval(), proc, family, family.make_inputs(proc, InputsConfig(image_roots=(str(rc.parent),))),
                           samples, batch_size=1, max_new_tokens=24)
    assert [p["text"] for p in lines] == local
    assert rcs["mean_iou"] == pytest.approx(sum(p["iou"] for p in lines) / 5)
    scalars = tb_scalars(out / "tensorboard")
    for tag in ("evaluate/refcoco_val/acc@0.5", "evaluate/synthetic/mean_iou", "evaluate/synthetic/named_shape_share"):
        assert tag in scalars
    assert any(t.startswith("evaluate/synthetic/boxes/") for t in tb_image_tags(out / "tensorboard"))


def test_family_mismatch_and_missing_set_are_config_errors(repo, tiny_ovis2_5, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(repo)
    assert job.main([CFG, f"model.path={tiny_ovis2_5}", f"run.storage_path={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "model.family" in err and "'ovis2_5' checkpoint" in err and CFG in err
    with pytest.raises(SystemExit) as e:
        job.main([CFG, f"evaluation.sets=[{{name: x, path: {tmp_path / 'nope.jsonl'}}}]"])
    assert e.value.code == 2
    assert "evaluation.sets[0]" in capsys.readouterr().err
