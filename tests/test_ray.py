"""Bulk transcoding on Ray (a local cluster of 2 CPUs): the same bytes as the plain path, bad
inputs as error rows, a dying worker retried, and the command line's --ray."""

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vqcodec
from vqcodec.cli import main

from .conftest import smooth_image

ray = pytest.importorskip("ray")
vqc_ray = pytest.importorskip("vqcodec.ray")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    vqc_ray.connect()
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A dozen small photos, and two inputs that are not images."""
    folder = tmp_path_factory.mktemp("photos")
    for n in range(12):
        Image.fromarray(smooth_image(24 + n, 40, seed=n)).save(folder / f"p{n:02d}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.jpg").write_text("not an image")
    return folder


def read(photos: Path):
    return ray.data.read_binary_files(str(photos), include_paths=True, num_cpus=0.1)


def test_compress_gives_the_plain_paths_bytes_and_error_rows(cluster, photos, tiny_weights):
    rows = {Path(r["path"]).name: r for r in vqc_ray.compress(read(photos), model=tiny_weights).take_all()}
    assert len(rows) == 14
    for n in range(12):
        row = rows[f"p{n:02d}.png"]
        assert row["error"] is None and row["vqc"] == vqcodec.compress(photos / f"p{n:02d}.png", model=tiny_weights)
        assert (
            row["width"] == 40
            and row["height"] == 24 + n
            and row["bpp"] == pytest.approx(8 * len(row["vqc"]) / (40 * (24 + n)))
        )
    for bad in ("broken.png", "notes.jpg"):
        assert rows[bad]["vqc"] is None and "not a readable image" in rows[bad]["error"]
        assert rows[bad]["error"].startswith(str(photos / bad))


def test_decompress_of_compress_gives_the_apis_pixels(cluster, photos, tiny_weights):
    compressed = vqc_ray.compress(read(photos), model=tiny_weights)
    out = vqc_ray.decompress(compressed, format="png", model=tiny_weights).take_all()
    assert len(out) == 14
    for row in out:
        name = Path(row["path"]).name
        if name in ("broken.png", "notes.jpg"):
            assert row["image"] is None and row["error"]
            continue
        expected = vqcodec.decompress(vqcodec.compress(photos / name, model=tiny_weights), model=tiny_weights)
        with Image.open(io.BytesIO(row["image"])) as im:
            assert np.array_equal(np.asarray(im), np.asarray(expected))


class CrashOnce(vqc_ray.Compressor):
    """A worker whose process dies at the first batch it sees (a marker file says it did)."""

    marker = None

    def __call__(self, batch):
        if not os.path.exists(self.marker):
            Path(self.marker).touch()
            os._exit(1)
        return super().__call__(batch)


def test_a_dying_worker_is_restarted_and_loses_nothing(cluster, photos, tiny_weights, tmp_path):
    crash = type("CrashHere", (CrashOnce,), {"marker": str(tmp_path / "crashed")})
    options = vqcodec.transcode.CompressOptions(tiny_weights)
    rows = vqc_ray.mapped(read(photos), crash, (options, "bytes"), 2).take_all()
    assert (tmp_path / "crashed").exists()
    names = sorted(Path(r["path"]).name for r in rows)
    assert len(names) == len(set(names)) == 14  # every input once
    assert sum(r["error"] is None for r in rows) == 12


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_the_command_lines_ray_writes_the_plain_files(cluster, capsys, photos, tiny_weights, tmp_path):
    plain, remote = tmp_path / "plain", tmp_path / "remote"
    code_plain, _, _ = run(capsys, "compress", str(photos), "-o", str(plain), "--model", tiny_weights)
    code, out, err = run(capsys, "compress", str(photos), "-o", str(remote), "--model", tiny_weights, "--ray")
    assert code == code_plain == 1  # the two bad inputs
    assert err.count("vqcodec: error:") == 2 and "12 of 14 files done, 2 failed" in out
    made = sorted(p.name for p in remote.iterdir())
    assert made == sorted(p.name for p in plain.iterdir()) and len(made) == 12
    assert all((remote / n).read_bytes() == (plain / n).read_bytes() for n in made)
    assert not list(remote.glob("*.tmp*"))
    decoded = tmp_path / "decoded"
    assert run(capsys, "decompress", str(remote), "-o", str(decoded), "--ray", "--model", tiny_weights)[0] == 0
    expected = vqcodec.decompress((remote / "p03.vqc").read_bytes(), model=tiny_weights)
    assert np.array_equal(np.asarray(Image.open(decoded / "p03.png")), np.asarray(expected))


def test_skip_existing_resumes_a_job(capsys, photos, tiny_weights, tmp_path):
    out = tmp_path / "out"
    job = ["compress", str(photos / "p00.png"), str(photos / "p01.png"), "-o", str(out), "--model", tiny_weights]
    assert run(capsys, *job)[0] == 0
    (out / "p01.vqc").write_bytes(b"VQC partial")  # an interrupted write elsewhere: not a valid file
    before = (out / "p00.vqc").stat().st_mtime_ns
    code, stdout, _ = run(capsys, *job, "--skip-existing", "--force")
    assert code == 0 and "p00.vqc: exists, skipped" in stdout
    assert (out / "p00.vqc").stat().st_mtime_ns == before
    assert (out / "p01.vqc").read_bytes() == vqcodec.compress(photos / "p01.png", model=tiny_weights)


def test_without_ray_the_flag_names_the_extra(tmp_path, photos):
    script = (
        "import sys; sys.modules['ray'] = None\n"
        "from vqcodec.cli import main\n"
        f"main(['compress', {str(photos / 'p00.png')!r}, '-o', {str(tmp_path / 'x.vqc')!r}, '--ray'])"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        == 'vqcodec: error: --ray needs Ray: install it with `python3 -m pip install "vqcodec[ray]"`'
    )
