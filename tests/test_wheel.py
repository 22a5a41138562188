"""The release: the wheel fits PyPI's default limit of 100 MB per file, with room for a new model."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 100 * 10**6  # PyPI's default upload limit per file
ROOM = 30 * 10**6  # what the one variable-rate vq model may add (issue 40: at most 30 MB of weights)


@pytest.mark.slow
def test_the_wheel_is_under_the_limit_with_room_for_the_new_model(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            str(ROOT),
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    wheel = next(tmp_path.glob("vqcodec-*.whl"))
    assert wheel.stat().st_size + ROOM <= LIMIT, f"{wheel.stat().st_size / 1e6:.1f} MB"
    names = zipfile.ZipFile(wheel).namelist()
    assert "vqcodec/weights/ae.safetensors" in names and "vqcodec/weights/retired.json" in names
    assert not any("/ae-q" in n or "/vae-q" in n for n in names)
