"""Batch inference: prompt files of every kind, both families (images, several images, video),
thinking budget, resume, bad input; and Ray Data map_batches against the single process."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from vlm_train.cli import main as cli
from vlm_train.data import synthetic
from vlm_train.infer.prompts import PromptError, read_prompts

BUDGET_TEXT = "Considering the limited time by the user"


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("media")
    synthetic.generate(root, 3, seed=1)
    with av.open(str(root / "clip.mp4"), "w") as out:
        st = out.add_stream("mpeg4", rate=10)
        st.width, st.height, st.pix_fmt = 64, 48, "yuv420p"
        for i in range(20):
            out.mux(st.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 8 * i, np.uint8), format="rgb24")))
        out.mux(st.encode())
    imgs = sorted(str(p.relative_to(root)) for p in (root / "images").iterdir())
    rows = [
        {"id": "one", "prompt": "Where is the red circle?", "images": [imgs[0]]},
        {"id": "two", "messages": [{"role": "user", "content": "<image>\n<image>\nWhat differs?"}], "images": imgs[1:3]},
        {"id": "vid", "prompt": "What happens?", "video": "clip.mp4"},
        {"id": "parts", "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "And here?"}]}],
         "images": [imgs[2]]},
    ]
    (root / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_read_prompts_plain_and_training_formats(media, tmp_path):
    p = read_prompts(str(media / "prompts.jsonl"))
    kinds = {s.id: [part.type for m in s.messages for part in m.content] for s in p.samples}
    assert kinds == {"one": ["image", "text"], "two": ["image", "image", "text"], "vid": ["video", "text"],
                     "parts": ["image", "text"]}
    assert p.samples[0].image_sizes == [(64, 64)]
    # A training file (RefCOCO format): the prompt is the conversation before the answer.
    rc = tmp_path / "rc.jsonl"
    rc.write_text(json.dumps({"image": str(media / "images" / sorted(x.name for x in (media / "images").iterdir())[0]),
                              "sent": "the circle", "bbox": [1, 1, 20, 20], "width": 64, "height": 64}) + "\n")
    (s,) = read_prompts(str(rc), image_root=str(media)).samples
    assert [m.role for m in s.messages] == ["user"] and "the circle" in s.messages[0].text()
    # Bad input names file and line; nothing half-read.
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "a", "prompt": "x", "images": ["missing.png"]}) + "\n{not json\n"
                   + json.dumps({"id": "b", "prompt": "x", "images": [str(tmp_path / "rc.jsonl")]}) + "\n")
    with pytest.raises(PromptError) as e:
        read_prompts(str(bad), image_root=str(tmp_path))
    msg = str(e.value)
    assert "3 unusable prompt(s)" in msg and f"{bad}:1" in msg and "missing.png" in msg and f"{bad}:2" in msg and f"{bad}:3" in msg


@pytest.mark.parametrize("family", ["internvl", "ovis2_5"])
def test_infer_both_families_resume_budget_and_errors(family, media, tiny_models, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    base = ["infer", str(tiny_models[family]), "--data", str(media / "prompts.jsonl"), "--out", str(out),
            "--max-new-tokens", "80", "--num-frames", "4", "--batch-size", "2"]
    assert cli([*base, "--thinking", "--thinking-budget", "6"]) == 0
    recs = lines(out)
    assert [r["id"] for r in recs] == ["one", "two", "vid", "parts"]
    for r in recs:
        assert set(r) >= {"id", "response", "thinking", "answer", "answer_boxes", "tool_calls", "tokens", "seconds"}
        # A random model never closes its thought: after 6 sampled tokens the budget's official
        # stop text was appended (not sampled), closing the thought; generation went on after it.
        assert BUDGET_TEXT in r["response"] and "</think>" in r["response"], r["response"]
        assert r["tokens"] > 6 and r["answer"] == r["response"].rpartition("</think>")[2].strip()
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["written"] == 4 and summary["engine"] == "local" and summary["family"] == family
    # An existing output is never overwritten; --resume skips the ids it holds.
    assert cli(base) == 2
    assert "exists; pass --resume" in capsys.readouterr().err and len(lines(out)) == 4
    kept = out.read_text().splitlines()
    out.write_text("\n".join(kept[:2]) + "\n" + kept[2][:10])  # a run killed mid-line
    assert cli([*base, "--resume", "--thinking", "--thinking-budget", "6"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["written"] == 2
    again = [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in out.read_text().splitlines()]
    assert again == [{k: v for k, v in r.items() if k != "seconds"} for r in recs]  # greedy: the same lines
    # A prompt longer than the context: a clear error naming its line; earlier lines are kept.
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"id": "ok", "prompt": "hi"}) + "\n" + json.dumps({"id": "long", "prompt": "word " * 5000}) + "\n")
    out2 = tmp_path / "out2.jsonl"
    assert cli(["infer", str(tiny_models[family]), "--data", str(long), "--out", str(out2), "--batch-size", "1",
                "--max-new-tokens", "4"]) == 2
    err = capsys.readouterr().err
    assert f"{long}:2" in err and "'long'" in err and "context is 4096" in err
    assert [r["id"] for r in lines(out2)] == ["ok"]


def test_job_family_mismatch(repo, tiny_ovis2_5, media, tmp_path, monkeypatch, capsys):
    from jobs import infer as job

    monkeypatch.chdir(repo)
    rc = job.main(["configs/debug/internvl_tiny_infer.yaml", f"model.path={tiny_ovis2_5}",
                   f"infer.data={media / 'prompts.jsonl'}", f"infer.out={tmp_path / 'o.jsonl'}"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "model.family" in err and "'ovis2_5' checkpoint" in err
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.slow
def test_ray_data_matches_single_process_and_tool_runs_live(taught, media, ray_cluster, repo, tmp_path, monkeypatch, capsys):
    """The taught model crops then answers; Ray Data (2 CPU actors) writes the same records."""
    import shutil

    from jobs import infer as job
    from vlm_train.testing.taught import QUESTION, TARGET

    root = tmp_path / "media"  # one image root: the shared media plus the taught scene
    shutil.copytree(media, root)
    shutil.copy(taught / "lesson" / "scene.png", root / "scene.png")
    rows = [{"id": f"q{i}", "prompt": QUESTION, "images": ["scene.png"]} for i in range(3)]
    rows += [json.loads(x) for x in (media / "prompts.jsonl").read_text().splitlines()]
    data = root / "p.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.chdir(repo)
    common = ["configs/debug/internvl_tiny_infer.yaml", f"model.path={taught}", f"infer.data={data}",
              f"infer.image_root={root}", "infer.max_new_tokens=200",
              "infer.batch_size=2", "data.num_frames=4", f"run.storage_path={tmp_path}"]
    assert job.main([*common, f"infer.out={tmp_path / 'local.jsonl'}", "infer.engine=local"]) == 0
    assert job.main([*common, f"infer.out={tmp_path / 'ray.jsonl'}", "infer.engine=ray",
                     f"cluster.address={ray_cluster.gcs_address}"]) == 0
    local, ray = lines(tmp_path / "local.jsonl"), lines(tmp_path / "ray.jsonl")
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["engine"] == "ray"

    def strip(rs):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rs]

    assert strip(ray) == strip(local) and [r["id"] for r in ray] == [r["id"] for r in rows]
    q = local[0]
    assert q["tool_calls"] and q["tool_calls"][0]["executed"] and q["tool_calls"][0]["box"] == [48.0, 8.0, 96.0, 56.0]
    (box,) = q["answer_boxes"]
    assert box["text"].startswith("<box>") and all(abs(a - b) <= 1 for a, b in zip(box["pixels"], TARGET.as_list(), strict=True))
