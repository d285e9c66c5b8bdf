"""Big ``.npy`` files: inputs that lie about their size, and Fortran order.

A big ``.npy`` into ``.npy`` is streamed band by band (``--tile N`` forces it
for a small one); it must refuse the same inputs as the in-memory path.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from upconv.cli import run

UPCONV = [sys.executable, "-m", "upconv"]
#: Forces the streamed path: tiles of 16 output rows (5 bands for 40 input rows at x2).
STREAM = ["--tile", "16"]


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------ lying and cut inputs

def corrupt_inputs(tmp_path: Path, rng) -> dict[str, Path]:
    """An .npy cut short, one with bytes after its array, and headers cut short."""
    buffer = io.BytesIO()
    np.save(buffer, rng.random((40, 36)).astype(np.float32))
    data = buffer.getvalue()
    files = {"short": data[:-100], "long": data + b"\0" * 100, "header": data[:30],
             "magic": data[:6], "claims_more": data.replace(b"(40, 36)", b"(90, 36)")}
    paths = {}
    for name, content in files.items():
        paths[name] = tmp_path / f"{name}.npy"
        paths[name].write_bytes(content)
    return paths


@pytest.mark.parametrize("how", ["whole", "streamed"])
@pytest.mark.parametrize("case, fragment", [
    ("short", "truncated .npy file: its header says 40x36 float32 (5760 bytes of data), "
              "but it holds 5660"),
    ("long", "corrupt .npy file: its header says 40x36 float32 (5760 bytes of data), but "
             "100 more bytes follow"),
    ("claims_more", "truncated .npy file: its header says 90x36 float32"),
    ("header", "corrupt .npy file (EOF: reading array header"),
    ("magic", "corrupt .npy file (EOF: reading magic string"),
])
def test_a_lying_or_cut_npy_is_one_line_naming_it(tmp_path, rng, capsys, how, case,
                                                   fragment):
    path = corrupt_inputs(tmp_path, rng)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    extra = STREAM if how == "streamed" else []
    status = run(["scale", str(path), str(tmp_path / "out.npy"), "-f", "2", *extra])
    line = one_error_line(capsys.readouterr().err)
    assert status == 1
    assert line.startswith(f"upconv: error: {path}: ") and fragment in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_lying_npy_is_refused_from_stdin_too(tmp_path, rng):
    data = corrupt_inputs(tmp_path, rng)["short"].read_bytes()
    done = subprocess.run(UPCONV + ["scale", "-", "-", "-f", "2", "--format", "npy"],
                          input=data, capture_output=True, timeout=120)
    err = done.stderr.decode()
    assert done.returncode == 1 and done.stdout == b""
    assert one_error_line(err).startswith("upconv: error: standard input: truncated .npy")


def test_a_small_fortran_order_npy_is_processed(tmp_path, rng, capsys):
    values = rng.random((20, 12, 3)).astype(np.float32)
    np.save(tmp_path / "f.npy", np.asfortranarray(values))
    np.save(tmp_path / "c.npy", values)
    for extra in ([], STREAM):  # --tile: tiled in memory, since its rows cannot be mapped
        for name in ("f", "c"):
            assert run(["scale", str(tmp_path / f"{name}.npy"), str(tmp_path / f"{name}_up.npy"),
                        "-f", "2", "-m", "bilinear", "-y", "--quiet", *extra]) == 0
        assert capsys.readouterr().err == ""
        np.testing.assert_array_equal(np.load(tmp_path / "f_up.npy"),
                                      np.load(tmp_path / "c_up.npy"))
