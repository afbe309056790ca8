"""Video: a real file written with PyAV is sampled by decord at the middle of uniform bins."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from vlm_train.config import DataConfig, SourceConfig
from vlm_train.data.load import load_dataset
from vlm_train.data.video import load_video, sample_indices, video_info

N, STEP = 30, 8


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """30 frames, frame i a flat grey of value 8*i, so a decoded frame tells its index."""
    path = tmp_path_factory.mktemp("v") / "clip.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.bit_rate = 4_000_000
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), STEP * i, np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def test_indices_are_bin_middles():
    assert sample_indices(30, 8) == [1, 5, 9, 13, 16, 20, 24, 28]
    assert sample_indices(80, 8) == [5, 15, 25, 35, 45, 55, 65, 75]
    assert sample_indices(5, 8) == [0, 1, 2, 3, 4]
    assert sample_indices(0, 8) == []


def test_decord_samples_expected_frames(video):
    info = video_info(video.name, [video.parent])
    assert info["frames"] == N and (info["width"], info["height"]) == (64, 48)
    frames, idx = load_video(video.name, [video.parent], num_frames=8)
    assert idx == [1, 5, 9, 13, 16, 20, 24, 28]
    assert len(frames) == 8 and all(f.size == (64, 48) and f.mode == "RGB" for f in frames)
    means = [float(np.asarray(f).mean()) for f in frames]
    for m, i in zip(means, idx, strict=True):
        assert abs(m - STEP * i) < 3, (means, idx)


def test_frames_cli(video, tmp_path):
    from vlm_train.data.cli import main

    assert main(["frames", str(video), "--out", str(tmp_path / "f"), "--num-frames", "4"]) == 0
    written = sorted(p.name for p in (tmp_path / "f").iterdir())
    assert written == ["frame_000_000003.png", "frame_001_000011.png", "frame_002_000018.png", "frame_003_000026.png"]
    assert main(["frames", str(tmp_path / "none.mp4"), "--out", str(tmp_path / "f")]) == 2
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    assert main(["frames", str(bad), "--out", str(tmp_path / "g")]) == 1


def test_video_samples_validate(video, tmp_path):
    rows = [
        {
            "id": "v",
            "video": video.name,
            "conversations": [{"from": "human", "value": "<video>\nWhat?"}, {"from": "gpt", "value": "Grey."}],
        },
        {
            "id": "w",
            "video": "missing.mp4",
            "conversations": [{"from": "human", "value": "<video>\nWhat?"}, {"from": "gpt", "value": "?"}],
        },
    ]
    p = tmp_path / "v.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = load_dataset(DataConfig(train=[SourceConfig(str(p), image_root=str(video.parent))], max_error_fraction=1.0))
    assert [s.id for s in r.samples] == ["v"]
    assert r.samples[0].messages[0].content[0].media == str(video.resolve())
    assert r.stats["videos_per_sample"]["total"] == 1
    assert [e.kind for e in r.errors] == ["missing_media"]
