import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqcodec import evaluation
from vqcodec.refine import REFINE_RATE
from vqcodec.report import run_eval

from .conftest import smooth_image


def test_psnr_known_values():
    a = np.zeros((4, 4, 3), dtype=np.uint8)
    b = a.copy()
    b[0, 0, 0] = 255  # one pixel off by 255: MSE = 255^2 / 48
    assert evaluation.psnr(a, b) == pytest.approx(10 * math.log10(48))
    assert evaluation.psnr(a, a) == math.inf


def test_ms_ssim_identity_and_degradation():
    img = smooth_image(200, 200)
    assert evaluation.ms_ssim(img, img) == pytest.approx(1.0)
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 20, img.shape), 0, 255).astype(np.uint8)
    worse = evaluation.ms_ssim(img, noisy)
    assert 0 < worse < 0.99
    assert evaluation.ms_ssim_db(0.9) == pytest.approx(10.0)
    assert 0 < evaluation.ms_ssim(img[:40, :30], noisy[:40, :30]) < 1  # small images use fewer scales


def test_bd_rate_hand_checked_example():
    """The same curve at 80% of the rate is exactly -20% BD-rate; 1 dB higher is +1 dB BD-PSNR."""
    rate, dist = np.array([0.2, 0.4, 0.6, 0.8]), np.array([26.0, 29.0, 31.0, 32.5])
    assert evaluation.bd_metrics((rate, dist), (rate * 0.8, dist))["bd_rate"] == pytest.approx(-20.0)
    assert evaluation.bd_metrics((rate, dist), (rate, dist + 1))["bd_psnr"] == pytest.approx(1.0)
    assert evaluation.bd_metrics((rate, dist), (rate[:1], dist[:1]))["bd_rate"] is None  # one point: no curve
    assert evaluation.bd_metrics((rate, dist), (rate, dist + 20))["bd_rate"] is None  # no overlap


def test_classical_codecs_measure_real_files():
    img = Image.fromarray(smooth_image(64, 80))
    for codec in evaluation.CLASSICAL:
        points = evaluation.classical_points(codec)
        rows = [evaluation.measure("x", codec, s, img, e, d) for s, e, d in (points[0], points[-1])]
        assert rows[0].bytes == len(e(img)) if (e := points[0][1]) else False
        assert rows[0].bpp < rows[1].bpp and rows[0].psnr < rows[1].psnr, codec


def test_eval_writes_a_complete_report(tmp_path):
    data = tmp_path / "images"
    data.mkdir()
    for n in range(2):
        Image.fromarray(smooth_image(48, 64, seed=n)).save(data / f"img{n}.png")
    out = tmp_path / "report"
    report = run_eval(str(data), ["jpeg", "webp"], str(out), workers=1)
    for name in ("report.json", "report.md", "report.html", "rd-psnr.png", "rd-msssim.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "report.json").read_text())
    assert len(saved["measurements"]) == 2 * (10 + 8) == len(report["measurements"])
    webp = next(t for t in saved["summary"] if t["codec"] == "webp")
    assert webp["bd_rate_psnr"] is not None
    page = (out / "report.html").read_text()
    assert "<table>" in page and 'class="viewer"' in page and page.count('<option value="webp"') == 2


def test_learned_codecs_name_their_refinement():
    from vqcodec.refine import REFINE_STEPS
    from vqcodec.report import learned_spec

    assert learned_spec("vq") == ("vq", 0)
    assert learned_spec("vq+refine") == ("vq", REFINE_STEPS)
    assert learned_spec("vq+refine20") == ("vq", 20)
    with pytest.raises(ValueError, match="must be a number"):
        learned_spec("vq+refine-3")


def test_eval_measures_a_refined_model_as_a_codec_of_its_own(tmp_path, tiny_weights, monkeypatch):
    from vqcodec import api, zoo

    monkeypatch.setattr(zoo, "shipped", lambda: (zoo.read_info(tiny_weights),))
    api._load.cache_clear()
    data = tmp_path / "images"
    data.mkdir()
    Image.fromarray(smooth_image(32, 48)).save(data / "img.png")
    report = run_eval(str(data), ["jpeg", "tiny", "tiny+refine5"], str(tmp_path / "report"))
    api._load.cache_clear()
    plain, refined = ([m for m in report["measurements"] if m["codec"] == c] for c in ("tiny", "tiny+refine5"))
    assert len(plain) == len(refined) == 1
    assert (refined[0]["bytes"], refined[0]["psnr"]) != (plain[0]["bytes"], plain[0]["psnr"])
    assert refined[0]["model"] == f"{plain[0]['model']} rate={REFINE_RATE}"  # a new rate weight is measured anew
    assert "tiny+refine5" in (tmp_path / "report" / "report.md").read_text()


def test_an_evaluation_resumes_from_its_measurements_and_remeasures_a_changed_model(
    tmp_path, tiny_weights, monkeypatch
):
    import json

    from vqcodec import api, report, zoo

    monkeypatch.setattr(zoo, "shipped", lambda: (zoo.read_info(tiny_weights),))
    api._load.cache_clear()
    data = tmp_path / "images"
    data.mkdir()
    for n in range(2):
        Image.fromarray(smooth_image(32, 48, seed=n)).save(data / f"{n}.png")
    log = tmp_path / "measurements.jsonl"
    first = run_eval(str(data), ["jpeg", "tiny"], str(tmp_path / "a"), measurements=str(log))
    lines = log.read_text().splitlines()
    assert len(lines) == len(first["measurements"]) == 2 * (len(evaluation.CLASSICAL["jpeg"][2]) + 1)

    # image 0's line of the tiny model says another weights id, and image 1's was cut short
    entries = [json.loads(line) for line in lines]
    assert [(e["codec"], e["image"]) for e in entries[-2:]] == [("tiny", "0.png"), ("tiny", "1.png")]
    entries[-2]["model"] = "0" * 16
    log.write_text("".join(json.dumps(e) + "\n" for e in entries[:-1]) + lines[-1][:20])
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[:3])
        return real(*args, **kwargs)

    real = evaluation.measure
    monkeypatch.setattr(evaluation, "measure", counting)
    monkeypatch.setattr(report, "measure", counting)
    second = run_eval(str(data), ["jpeg", "tiny"], str(tmp_path / "b"), measurements=str(log))
    api._load.cache_clear()
    assert calls == [("0.png", "tiny", "q1"), ("1.png", "tiny", "q1")]
    assert [m["bpp"] for m in second["measurements"]] == [m["bpp"] for m in first["measurements"]]
    assert {m["model"] for m in second["measurements"] if m["codec"] == "tiny"} == {
        zoo.read_info(tiny_weights).model_id.hex()
    }


def test_quality_difference_at_the_same_rate_works_for_one_point():
    anchor = (np.array([0.2, 0.4]), np.array([24.0, 28.0]))
    assert evaluation.delta_at_rate(anchor, (np.array([0.3]), np.array([27.0]))) == pytest.approx(1.0)
    assert evaluation.delta_at_rate(anchor, (np.array([0.9]), np.array([30.0]))) is None  # outside the range


def test_gain_at_equal_rate_is_the_difference_of_two_offsets_from_the_curve():
    curve = (np.array([0.2, 0.4]), np.array([24.0, 28.0]))
    # 0.25 bpp lies 0.5 dB below the curve's 25.0, 0.35 bpp 0.5 dB above its 27.0
    assert evaluation.gain_at_equal_rate(curve, (0.25, 24.5), (0.35, 27.5)) == pytest.approx(1.0)
    assert evaluation.gain_at_equal_rate(curve, (0.25, 24.5), (0.5, 30.0)) is None


def test_the_kodak_curve_of_a_shipped_model_rises_with_its_levels():
    bpp, psnr = evaluation.kodak_curve("vq")
    assert len(bpp) >= 6 and np.all(np.diff(bpp) > 0) and np.all(np.diff(psnr) > 0)


def test_learned_codecs_are_compared_with_the_scalar_baselines():
    from vqcodec.report import baseline_comparison, comparison_rows, core_hours

    def row(codec: str, setting: str, bpp: float, psnr: float) -> evaluation.Measurement:
        return evaluation.Measurement("img", codec, setting, 1, bpp, psnr, 0.9, psnr - 15, 0.1, 0.1)

    rows = [row("vae", "q1", 0.2, 24.0), row("vae", "q2", 0.4, 28.0), row("vq", "q1", 0.3, 27.0)]
    rows += [row("jpeg", "q5", 0.3, 22.0), row("jpeg", "q9", 0.5, 25.0)]
    comparison = baseline_comparison(rows, ["vq", "vae", "jpeg"])
    assert [(c["codec"], c["baseline"]) for c in comparison] == [("vq", "vae")]  # classical codecs are not compared
    assert comparison[0]["psnr_at_rate"] == pytest.approx(1.0)
    assert comparison[0]["ms_ssim_db_at_rate"] == pytest.approx(1.0)
    assert comparison[0]["bd_rate_psnr"] is None  # one rate point: no BD-rate
    assert comparison_rows(comparison)[0][:3] == ["vq", "vae", "+1.00"]
    assert comparison[0]["budget"] == f"{core_hours('vq')} / {core_hours('vae')}"  # the shipped models' budgets
    assert core_hours("no-such-model") == "n/a"


def test_a_variable_rate_family_counts_its_shared_run_once(monkeypatch):
    from vqcodec import zoo

    def info(quality: int, sha: str, training: dict) -> zoo.WeightsInfo:
        return zoo.WeightsInfo(Path(f"m-q{quality}"), "ae", "m", quality, sha, {"training": training})

    budget = {"train": {"core_hours": 2.5, "estimated": "steps x seconds per step"}}
    shared = [info(q, f"{q}" * 64, {"steps": {"train": 9}, "budget": budget, "lambdas": [1, 2]}) for q in (1, 2)]
    monkeypatch.setattr(zoo, "levels", lambda name: shared)
    assert zoo.training_core_hours("m") == (2.5, True, True, 0.0)
    budget = {"a": {"core_hours": 1.0, "gpu_hours": 0.25}}
    separate = [info(q, f"{q}" * 64, {"steps": {"a": 1, "b": 1}, "budget": budget}) for q in (1, 2)]
    monkeypatch.setattr(zoo, "levels", lambda name: separate)
    assert zoo.training_core_hours("m") == (2.0, False, False, 0.5)  # each level's own run; stage b recorded nothing


def test_each_level_is_placed_against_every_reference():
    from vqcodec.report import level_standings, reference_bd, standings_cells

    def row(codec: str, setting: str, bpp: float, psnr: float) -> evaluation.Measurement:
        return evaluation.Measurement("img", codec, setting, 1, bpp, psnr, 0.9, psnr - 15, 0.1, 0.1)

    rows = [row("vq", "q1", 0.1, 25.0), row("vq", "q2", 0.3, 29.0), row("vq", "q3", 0.9, 33.0)]
    rows += [row("jpeg", "q5", 0.2, 24.0), row("jpeg", "q9", 0.4, 28.0), row("jpeg", "q20", 1.0, 32.0)]
    published = {"mbt (published)": {"bpp": [0.1, 0.5], "psnr": [27.0, 31.0], "ms_ssim": None}}
    standings = level_standings(rows, ["vq", "jpeg"], published)
    assert [s["setting"] for s in standings] == ["q1", "q2", "q3"]  # in rising rate
    q2 = standings[1]
    assert (q2["bpp"], q2["psnr"]) == (pytest.approx(0.3), pytest.approx(29.0))
    assert q2["psnr_vs"]["jpeg"] == pytest.approx(3.0)  # jpeg at 0.3 bpp: 26 dB
    assert q2["psnr_vs"]["mbt (published)"] == pytest.approx(0.0)  # 29 dB at 0.3 bpp
    assert standings[0]["psnr_vs"]["jpeg"] is None  # 0.1 bpp: below jpeg's range
    head, body = standings_cells(standings)
    assert head[-2:] == ["vs jpeg", "vs mbt (published)"] and body[0][-2:] == ["n/a", "-2.00"]
    (bd,) = reference_bd(rows, ["vq", "jpeg"])
    assert (bd["codec"], bd["reference"]) == ("vq", "jpeg") and bd["bd_rate_psnr"] < -20  # far fewer bits


def test_learned_codecs_measure_the_same_in_worker_processes(tmp_path, tiny_weights, monkeypatch):
    """Workers load each level from its weights file (not by name), so the files they write, and
    the measurements they log, are those of one process."""
    from vqcodec import api, zoo
    from vqcodec.report import measure_all

    monkeypatch.setattr(zoo, "shipped", lambda: (zoo.read_info(tiny_weights),))
    api._load.cache_clear()
    for n in range(3):
        Image.fromarray(smooth_image(32, 48, seed=n)).save(tmp_path / f"{n}.png")
    files = sorted(tmp_path.glob("*.png"))
    log = evaluation.MeasurementLog(tmp_path / "log.jsonl")
    one, two = measure_all(files, ["tiny+refine2"], 1), measure_all(files, ["tiny+refine2"], 2, log=log)
    api._load.cache_clear()
    assert [(m.image, m.bytes, m.psnr, m.model) for m in one] == [(m.image, m.bytes, m.psnr, m.model) for m in two]
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 3
