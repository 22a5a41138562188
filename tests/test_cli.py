import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqcodec.cli import main

from .conftest import smooth_image


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(smooth_image(30, 41)).save(path)
    return path


def test_compress_info_decompress(capsys, tmp_path, photo, tiny_weights):
    code, out, err = run(capsys, "compress", str(photo), "--model", tiny_weights, "--json")
    assert code == 0, err
    result = json.loads(out)[0]
    vqc = tmp_path / "photo.vqc"
    assert result["bytes"] == vqc.stat().st_size
    assert result["bpp"] == pytest.approx(8 * vqc.stat().st_size / (30 * 41))

    code, out, _ = run(capsys, "info", str(vqc), "--json")
    fields = json.loads(out)
    assert code == 0 and (fields["width"], fields["height"], fields["family"]) == (41, 30, "vq")

    png = tmp_path / "back.png"
    code, out, err = run(capsys, "decompress", str(vqc), "-o", str(png), "--model", tiny_weights)
    assert code == 0, err
    assert Image.open(png).size == (41, 30)


def test_existing_output_needs_force(capsys, tmp_path, photo, tiny_weights):
    target = tmp_path / "photo.vqc"
    target.write_bytes(b"precious")
    code, _, err = run(capsys, "compress", str(photo), "--model", tiny_weights)
    assert code == 1 and "exists" in err and target.read_bytes() == b"precious"
    code, _, _ = run(capsys, "compress", str(photo), "--model", tiny_weights, "--force")
    assert code == 0 and target.read_bytes()[:3] == b"VQC"


def test_batch_reports_bad_files_and_does_the_rest(capsys, tmp_path, photo, tiny_weights):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    outdir = tmp_path / "out"
    code, out, err = run(capsys, "compress", str(tmp_path), "-o", str(outdir), "--model", tiny_weights)
    assert code == 1
    assert err.count("\n") == 1 and "broken.png" in err and "Traceback" not in err
    assert (outdir / "photo.vqc").exists() and not (outdir / "broken.vqc").exists()
    assert "1 of 2 files done, 1 failed" in out
    assert not [p for p in outdir.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_errors_are_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.vqc"
    bad.write_bytes(b"VQC\x07garbage")
    code, _out, err = run(capsys, "decompress", str(bad))
    assert code == 1 and err.strip().count("\n") == 0 and "unsupported .vqc format version 7" in err
    assert not (tmp_path / "bad.png").exists()
    code, _, err = run(capsys, "info", str(tmp_path / "missing.vqc"))
    assert code != 0 and err.strip().count("\n") == 0
    code, _, err = run(capsys, "compress", str(tmp_path / "missing.png"), "--model", "nonexistent-model")
    assert code == 1 and "unknown model" in err


def test_decompress_unknown_output_format(capsys, tmp_path, photo, tiny_weights):
    run(capsys, "compress", str(photo), "--model", tiny_weights)
    code, _, err = run(
        capsys, "decompress", str(tmp_path / "photo.vqc"), "-o", str(tmp_path / "x.nope"), "--model", tiny_weights
    )
    assert code == 1 and "unknown image format" in err and not (tmp_path / "x.nope").exists()


def test_grayscale_round_trip_through_files(capsys, tmp_path, tiny_weights):
    path = tmp_path / "gray.png"
    Image.fromarray(smooth_image(16, 16)[..., 1]).save(path)
    assert run(capsys, "compress", str(path), "--model", tiny_weights)[0] == 0
    code, _, err = run(capsys, "decompress", str(tmp_path / "gray.vqc"), "--model", tiny_weights)
    assert code == 1 and "exists" in err  # would overwrite the original
    target = tmp_path / "gray-out.png"
    assert run(capsys, "decompress", str(tmp_path / "gray.vqc"), "-o", str(target), "--model", tiny_weights)[0] == 0
    out = Image.open(target)
    assert out.mode == "L" and np.asarray(out).shape == (16, 16)


def test_compress_to_a_target_rate(capsys, tmp_path, tiny_ladder):
    img = tmp_path / "img.png"
    Image.fromarray(smooth_image(64, 96)).save(img)
    code, out, err = run(capsys, "compress", str(img), "--model", "ladder", "--target-bpp", "1000", "--json")
    assert code == 0, err
    result = json.loads(out)[0]
    assert result["quality"] == 3 and result["bpp"] <= 1000
    code, _, err = run(capsys, "compress", str(img), "--model", "ladder", "--target-bpp", "0.001", "--force")
    assert code == 1 and "cannot reach 0.001 bpp" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "compress", str(img), "--model", "ladder", "-q", "1", "--target-bpp", "1", "--force")
    assert code == 1 and "not both" in err


def test_refine_changes_the_encoding_not_the_decoder(capsys, tmp_path, photo, tiny_weights, tiny_ladder):
    plain, refined = tmp_path / "plain.vqc", tmp_path / "refined.vqc"
    assert run(capsys, "compress", str(photo), "--model", tiny_weights, "-o", str(plain))[0] == 0
    code, _, err = run(capsys, "compress", str(photo), "--model", tiny_weights, "--refine", "5", "-o", str(refined))
    assert code == 0, err
    assert plain.read_bytes() != refined.read_bytes()
    code, _, err = run(capsys, "decompress", str(refined), "-o", str(tmp_path / "back.png"), "--model", tiny_weights)
    assert code == 0, err
    code, _, err = run(capsys, "compress", str(photo), "--model", "ladder", "--target-bpp", "1000", "--refine", "2")
    assert code == 1 and "vq models" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_outputs_get_the_usual_permissions(capsys, tmp_path, photo, tiny_weights, umask):
    old = os.umask(umask)
    try:
        assert run(capsys, "compress", str(photo), "--model", tiny_weights)[0] == 0
        out = tmp_path / "out.png"
        assert run(capsys, "decompress", str(tmp_path / "photo.vqc"), "-o", str(out), "--model", tiny_weights)[0] == 0
    finally:
        os.umask(old)
    for path in (tmp_path / "photo.vqc", out):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_a_missing_output_directory_is_named(capsys, tmp_path, photo, tiny_weights):
    target = tmp_path / "absent" / "x.vqc"
    code, _, err = run(capsys, "compress", str(photo), "-o", str(target), "--model", tiny_weights)
    assert code == 1 and f"output directory {tmp_path / 'absent'} does not exist" in err and ".tmp" not in err
    run(capsys, "compress", str(photo), "--model", tiny_weights)
    code, _, err = run(
        capsys,
        "decompress",
        str(tmp_path / "photo.vqc"),
        "-o",
        str(tmp_path / "absent" / "x.png"),
        "--model",
        tiny_weights,
    )
    assert code == 1 and "does not exist" in err


def test_a_pipe_from_standard_input_to_standard_output(tmp_path, photo, tiny_weights):
    """cat a.png | vqcodec compress - -o - | vqcodec decompress - -o - > b.png"""
    cmd = [sys.executable, "-m", "vqcodec"]
    coded = subprocess.run(
        [*cmd, "compress", "-", "-o", "-", "--model", tiny_weights], input=photo.read_bytes(), capture_output=True
    )
    assert coded.returncode == 0, coded.stderr
    assert coded.stdout[:3] == b"VQC" and b"bpp" in coded.stderr
    decoded = subprocess.run(
        [*cmd, "decompress", "-", "-o", "-", "--model", tiny_weights], input=coded.stdout, capture_output=True
    )
    assert decoded.returncode == 0, decoded.stderr
    img = Image.open(io.BytesIO(decoded.stdout))
    assert img.format == "PNG" and img.size == (41, 30)
    assert not (tmp_path / "-").exists() and not Path("-").exists()


@pytest.mark.parametrize("module", ["bjontegaard", "matplotlib", "pytorch_msssim"])
def test_eval_without_its_extras_names_the_install_command(capsys, tmp_path, monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError, as when it is not installed
    code, _, err = run(capsys, "eval", str(tmp_path), "--codecs", "jpeg")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert module.replace("_", "-") in err and 'pip install "vqcodec[eval]"' in err and "internal error" not in err


def test_info_names_the_model_that_decodes_the_file(capsys, tmp_path, photo, tiny_weights, monkeypatch):
    from vqcodec import zoo

    assert run(capsys, "compress", str(photo), "--model", tiny_weights)[0] == 0
    code, out, _ = run(capsys, "info", str(tmp_path / "photo.vqc"), "--json")
    fields = json.loads(out)
    assert code == 0 and fields["version"] == 2 and fields["model"] is None  # the tiny model is not installed
    monkeypatch.setattr(zoo, "shipped", lambda: (zoo.read_info(tiny_weights),))
    code, out, _ = run(capsys, "info", str(tmp_path / "photo.vqc"), "--json")
    assert json.loads(out)["model"] == "tiny q1"


def test_warnings_are_one_line_each(capsys, tmp_path, tiny_weights, monkeypatch):
    import warnings

    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # restored after the test
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        code, _, err = run(capsys, "compress", str(tmp_path / "anim.gif"), "--model", tiny_weights)
    assert code == 0 and err == f"vqcodec: warning: {tmp_path / 'anim.gif'} has 2 frames: vqcodec codes the first\n"


def test_models_lists_every_shipped_level_with_its_budget(capsys):
    code, out, _ = run(capsys, "models", "--json")
    rows = json.loads(out)
    assert code == 0 and {r["family"] for r in rows} == {"vq", "ae", "vae"}
    assert all(r["core_hours_recorded"] >= 0 and r["levels_sharing_training"] >= 1 for r in rows)
    code, out, _ = run(capsys, "models")
    assert code == 0 and len(out.splitlines()) == len(rows) + 1


def test_training_options_reach_the_run(capsys, tmp_path):
    """--scale and --timed (the GPU burst's options) land in the run's configuration."""
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        Image.fromarray(smooth_image(64, 64)).save(tmp_path / split / "0.png")
    toml = tmp_path / "tiny.toml"
    toml.write_text("[model]\nchannels = 8\nhalf_channels = 4\nlatent_dim = 4\ncodebook_size = 8\n")
    folders = ["--data", str(tmp_path / "train"), "--val", str(tmp_path / "val")]
    args = ["--config", str(toml), "--out", str(tmp_path / "run"), "--steps", "1", "--batch", "1", "--crop", "32"]
    code, _, err = run(capsys, "train", "vqvae", *args, *folders, "--scale", "1", "--timed", "--minutes", "5")
    assert code == 0, err
    train = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert train["scales"] == [1.0] and train["timed"] and train["minutes"] == 5


LIGHT_COMMAND = """
import sys
from vqcodec.cli import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    code = e.code
heavy = sorted(m for m in ("torch", "numba") if m in sys.modules)
print("HEAVY:" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["models"], ["info", "FILE"]])
def test_light_commands_load_neither_torch_nor_numba(tmp_path, photo, tiny_weights, args):
    from vqcodec.api import compress

    vqc = tmp_path / "x.vqc"
    vqc.write_bytes(compress(photo, model=tiny_weights))
    argv = [str(vqc) if a == "FILE" else a for a in args]
    done = subprocess.run([sys.executable, "-c", LIGHT_COMMAND, *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "HEAVY:\n" in done.stderr, done.stderr


def test_compare_without_its_extra_names_compare_and_only_what_it_needs(capsys, photo, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pytorch_msssim" else real(name, *a)
    )
    code, _, err = run(capsys, "compare", str(photo))
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("vqcodec: error: vqcodec compare needs pytorch-msssim:")
    assert "bjontegaard" not in err and "matplotlib" not in err


def test_training_needs_its_image_folders(capsys, tmp_path):
    code, _, err = run(capsys, "train", "vqvae", "--out", str(tmp_path / "run"))
    assert code != 0 and "--data FOLDER" in err
    code, _, err = run(capsys, "train", "vqvae", "--out", str(tmp_path / "r"), "--data", "nowhere", "--val", "nowhere")
    assert code == 1 and "nowhere is not a folder" in err
