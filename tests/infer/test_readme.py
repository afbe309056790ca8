"""The README's "Use the trained model" commands, run against a finished-run directory.

export and infer run here as written (the run directory built without training); the
evaluation command is the one tests/eval/test_job.py runs on Ray, and the demo command the one
tests/infer/test_web.py drives in a browser (both slow): this test pins the README to them.
"""

from __future__ import annotations

import json
import shlex
import shutil

from tests.infer.helpers import trained_run
from vlm_train.data import synthetic
from vlm_train.models import get_family

RUN = "runs/internvl_tiny_pipeline"


def readme_commands(repo) -> list[list[str]]:
    text = (repo / "README.md").read_text()
    block = text.split("## Use the trained model", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [shlex.split(line) for line in block.strip().splitlines()]


def test_readme_use_commands(repo, tiny_internvl, tmp_path, monkeypatch, capsys):
    export, evaluate, infer, web = readme_commands(repo)
    assert export[:2] == ["vlm-train", "export"] and web[:2] == ["vlm-train", "web"]
    assert evaluate[:3] == ["python", "-m", "jobs.evaluate"] and infer[:3] == ["python", "-m", "jobs.infer"]
    from tests.eval.test_job import CFG as EVAL_CFG

    assert evaluate[3] == EVAL_CFG and f"model.path={RUN}" in evaluate and web[2:] == [RUN]
    # A finished run where the README expects it (data/eval.jsonl as the pipeline leaves it).
    monkeypatch.chdir(tmp_path)
    run, _ = trained_run(tmp_path / "runs", "internvl", tiny_internvl)
    run.rename(tmp_path / RUN)
    fam = get_family("internvl")
    samples = synthetic.generate(tmp_path / RUN / "data", 3, seed=5, answer=fam.grounding_answer, prompt=fam.grounding_prompt)
    for s in samples:
        s.meta["image_root"] = str(tmp_path / RUN / "data")
    (tmp_path / RUN / "data" / "eval.jsonl").write_text("".join(s.to_json() + "\n" for s in samples))
    shutil.copytree(repo / "configs", tmp_path / "configs")
    shutil.copytree(repo / "cluster", tmp_path / "cluster")
    from vlm_train.cli import main as cli

    assert cli(export[1:]) == 0
    assert json.loads(capsys.readouterr().out)["architectures"] == ["InternVLForConditionalGeneration"]
    from jobs import infer as job

    assert job.main(infer[3:] + ["infer.max_new_tokens=8"]) == 0
    out = tmp_path / RUN / "infer" / "eval.jsonl"
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == [s.id for s in samples]
