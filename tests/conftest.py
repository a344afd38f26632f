import base64
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True, scope="session")
def runs_folder(tmp_path_factory):
    """The dashboard saves runs: keep every test's runs out of the checkout's ./runs."""
    import os

    folder = tmp_path_factory.mktemp("runs")
    os.environ["DASHBOARD_RUNS_DIR"] = str(folder)
    return folder


def png_pixels(data_url: str) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """An 8-bit indexed PNG data URL (what charts.palette_png writes) read back: (palette indices
    (height, width), RGBA palette). Written from the PNG specification, so a test checks the
    encoder against it rather than against itself."""
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix)
    png = base64.b64decode(data_url[len(prefix):])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    at, chunks = 8, {}
    while at < len(png):
        (length,), kind = struct.unpack(">I", png[at:at + 4]), png[at + 4:at + 8]
        body = png[at + 8:at + 8 + length]
        assert struct.unpack(">I", png[at + 8 + length:at + 12 + length])[0] == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        at += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour_type) == (8, 3)  # 8-bit palette indices
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, width + 1)
    assert (rows[:, 0] == 0).all()  # no row filter
    rgb = np.frombuffer(chunks[b"PLTE"], np.uint8).reshape(-1, 3)
    alpha = list(chunks.get(b"tRNS", b"")) + [255] * (len(rgb) - len(chunks.get(b"tRNS", b"")))
    return rows[:, 1:], [(*map(int, colour), a) for colour, a in zip(rgb, alpha)]
