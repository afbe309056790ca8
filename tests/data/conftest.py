"""Fixtures of the data tests: an image root holding one good image and the bad ones."""

from __future__ import annotations

import os
import struct
import zlib

import pytest
from PIL import Image


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but that holds no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    r.mkdir()
    Image.new("RGB", (40, 30), "red").save(r / "ok.png")
    buf = (r / "ok.png").read_bytes()
    (r / "truncated.png").write_bytes(buf[: len(buf) // 2])
    (r / "garbage.png").write_bytes(os.urandom(64))
    (r / "empty.png").write_bytes(b"")
    (r / "huge.png").write_bytes(_png_header(20000, 20000))
    (tmp_path / "secret.png").write_bytes(buf)
    (r / "link.png").symlink_to(tmp_path / "secret.png")
    return r
