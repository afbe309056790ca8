"""Video frames with decord: uniform bins, the middle frame of each (docs/models.md, "Seed data formats")."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from vlm_train.data.errors import CORRUPT_MEDIA
from vlm_train.data.media import MediaError, resolve_path


def sample_indices(total: int, num_frames: int) -> list[int]:
    """Indices of ``num_frames`` frames out of ``total``: the middle frame of each of
    ``num_frames`` equal bins (fewer frames than bins: every frame, in order)."""
    if total <= 0:
        return []
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if total <= num_frames:
        return list(range(total))
    bin_size = total / num_frames
    return [min(total - 1, int(bin_size * (i + 0.5))) for i in range(num_frames)]


def _reader(real: Path, shown: str):
    if real.stat().st_size == 0:
        raise MediaError(f"{shown}: empty file (0 bytes)", CORRUPT_MEDIA)
    try:
        import decord

        return decord.VideoReader(str(real), num_threads=1)
    except Exception as e:  # decord raises its own DECORDError and RuntimeErrors
        raise MediaError(f"{shown}: cannot open video ({type(e).__name__}: {str(e)[:200]})", CORRUPT_MEDIA) from None


def video_info(path: str, roots: Sequence[str | os.PathLike]) -> dict[str, float]:
    """Frame count, fps and size of a video (confined to ``roots``)."""
    real = resolve_path(path, roots)
    vr = _reader(real, path)
    n = len(vr)
    if n == 0:
        raise MediaError(f"{path}: video has no frames", CORRUPT_MEDIA)
    try:
        h, w = vr[0].shape[:2]
    except Exception as e:  # decord's DECORDError for a damaged first frame
        raise MediaError(f"{path}: cannot decode frame 0 ({type(e).__name__}: {str(e)[:200]})", CORRUPT_MEDIA) from None
    return {"frames": n, "fps": float(vr.get_avg_fps()), "width": w, "height": h}


def load_video(
    path: str, roots: Sequence[str | os.PathLike], num_frames: int = 8
) -> tuple[list[Image.Image], list[int]]:
    """(frames as RGB PIL images, their indices) sampled uniformly from a video."""
    real = resolve_path(path, roots)
    vr = _reader(real, path)
    idx = sample_indices(len(vr), num_frames)
    if not idx:
        raise MediaError(f"{path}: video has no frames", CORRUPT_MEDIA)
    try:
        batch = vr.get_batch(idx).asnumpy()
    except Exception as e:
        raise MediaError(
            f"{path}: cannot decode frames {idx} ({type(e).__name__}: {str(e)[:200]})", CORRUPT_MEDIA
        ) from None
    return [Image.fromarray(f).convert("RGB") for f in batch], idx


def write_frames(
    path: str, out_dir: str | Path, num_frames: int = 8, roots: Sequence[str | os.PathLike] | None = None
) -> list[Path]:
    """Write sampled frames as ``frame_<i>_<index>.png``; returns the written paths.

    ``roots`` default to the video's own folder (a command-line user names the file directly).
    """
    if roots is None:
        path = str(Path(path).resolve())
        roots = [str(Path(path).parent)]
    frames, idx = load_video(path, roots, num_frames)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for k, (im, i) in enumerate(zip(frames, idx, strict=True)):
        p = out / f"frame_{k:03d}_{i:06d}.png"
        im.save(p)
        written.append(p)
    return written
