"""What encoder-side refinement (``vqcodec compress --refine N``) buys at one level, and at
which rate weight: whole files of every image, coded by every level of the model with the
encoder's nearest codes (the ladder on these images), by WebP's quality sweep, and at
``--quality`` with N refinement steps at each elasticity of ``--rates``, all decoded. It prints
each point's mean rate (8 x file bytes / pixels) and PSNR, the median encode time, the gain at
equal rate (the refined point's height above the ladder measured on the same images, less the
plain level's, linear in bpp as the evaluation report interpolates) and each point's PSNR
against WebP's curve on the same images at its rate.

    python bin/refine_gain.py --quality 6 --rates 0.4,0.75 --folder ../shared/data/val --images 6

With ``--measurements FILE`` (the log of ``vqcodec eval --codecs vq,vq+refine,webp,avif
--measurements FILE``, which may be partial) it measures nothing: for every level whose refined
files are logged for all the images its plain files are, it prints both points, the gain at
equal rate against the logged ladder, and each point's PSNR against WebP and AVIF at its rate;
then the BD-rates of the plain ladder and of the finished refined levels against each classical
codec in the log, and of those refined levels against the plain ladder.

    python bin/refine_gain.py --measurements docs/kodak-measurements.jsonl
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

from vqcodec.api import load_codec
from vqcodec.data import image_files, load_rgb
from vqcodec.evaluation import (
    Measurement,
    MeasurementLog,
    bd_metrics,
    classical_points,
    curve,
    delta_at_rate,
    gain_at_equal_rate,
    measure,
)
from vqcodec.refine import REFINE_RATE, REFINE_STEPS
from vqcodec.report import REFINED
from vqcodec.zoo import levels

KODAK = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "kodak"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vq")
    ap.add_argument("--quality", type=int, default=4)
    ap.add_argument("--steps", type=int, default=REFINE_STEPS)
    ap.add_argument("--rates", default=str(REFINE_RATE), help="rate weights (elasticities) to compare, as 0.4,0.75")
    ap.add_argument("--images", type=int, default=24, help="the first N images of the folder")
    ap.add_argument("--folder", type=Path, default=KODAK)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--measurements", type=Path, default=None, help="summarise this evaluation log instead")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    if args.measurements:
        summarise(args.measurements, args.model, args.steps, rates[0])
        return

    files = image_files(args.folder)[: args.images]
    rows = measure_refinement(files, args.model, args.quality, args.steps, rates, args.device)
    report_refinement(rows, args, rates)


def rate_codec(rate: float) -> str:
    return f"refine rate={rate}"


def measure_refinement(
    files: list[Path], model: str, quality: int, steps: int, rates: list[float], device: str
) -> list[Measurement]:
    """Every image coded by each level of ``model`` (nearest codes), by WebP's sweep, and by
    level ``quality`` with ``steps`` refinement steps at each rate weight."""
    ladder = [load_codec(model, info.quality, device) for info in levels(model)]
    codec = next(c for c in ladder if c.info.quality == quality)
    rows = []
    for path in files:
        img = load_rgb(path)
        rows += [measure(path.name, model, f"q{c.info.quality}", img, c.compress, c.decompress) for c in ladder]
        rows += [measure(path.name, "webp", s, img, enc, dec) for s, enc, dec in classical_points("webp")]
        for rate in rates:
            codec.refine_rate = rate
            refined = measure(
                path.name, rate_codec(rate), f"q{quality}", img, lambda im: codec.compress(im, steps), codec.decompress
            )
            rows.append(refined)
            print(
                f"{path.name} rate {rate}: {refined.bpp:.4f} bpp {refined.psnr:.3f} dB {refined.encode_s:.1f} s",
                flush=True,
            )
    return rows


def report_refinement(rows: list[Measurement], args: argparse.Namespace, rates: list[float]) -> None:
    """Each rate weight's refined point against the plain level, the ladder and WebP, all measured
    on the same images."""
    ladder, webp = curve(rows, args.model), curve(rows, "webp")

    def summary(codec: str) -> tuple[tuple[float, float], float, str]:
        ms = [r for r in rows if r.codec == codec and r.setting == f"q{args.quality}"]
        bpp, db = float(np.mean([r.bpp for r in ms])), float(np.mean([r.psnr for r in ms]))
        versus = delta_at_rate(webp, (np.array([bpp]), np.array([db])))
        return (bpp, db), statistics.median(r.encode_s for r in ms), "n/a" if versus is None else f"{versus:+.3f} dB"

    plain, plain_s, plain_webp = summary(args.model)
    images = len({r.image for r in rows})
    print(f"{args.model} q{args.quality}, {images} images of {args.folder.name}:")
    print(f"  nearest codes: {plain[0]:.4f} bpp, {plain[1]:.3f} dB, encode median {plain_s:.2f} s", end="")
    print(f"; vs WebP {plain_webp}")
    for rate in rates:
        (bpp, db), seconds, versus = summary(rate_codec(rate))
        gain = gain_at_equal_rate(ladder, plain, (bpp, db))
        print(
            f"  refine {args.steps}, rate {rate}: {bpp:.4f} bpp, {db:.3f} dB ({100 * (bpp / plain[0] - 1):+.2f}% bits,"
            f" {db - plain[1]:+.3f} dB), at equal rate {equal_rate(gain, [plain, (bpp, db)])} against the ladder"
            f" on these images; vs WebP {versus}; encode median {seconds:.1f} s"
        )


def summarise(log_path: Path, model: str, steps: int, rate: float) -> None:
    """The refined levels of an evaluation log against its plain ladder and classical codecs."""
    refined_name = model + REFINED + ("" if steps == REFINE_STEPS else str(steps))
    current = {f"q{i.quality}": i.model_id.hex() for i in levels(model)}  # other models' lines are left out
    method = {model: "", refined_name: f" rate={rate}"}
    rows = [
        r
        for r in MeasurementLog(log_path).done.values()
        if r.setting not in current or r.model == current[r.setting] + method.get(r.codec, "")
    ]
    ladder = curve(rows, model)
    classical = {c: curve(rows, c) for c in ("webp", "avif") if any(r.codec == c for r in rows)}
    print(f"{refined_name} against {model} ({log_path}):")
    finished = []
    for setting in sorted({r.setting for r in rows if r.codec == model}, key=lambda s: int(s[1:])):
        plain = {r.image: r for r in rows if r.codec == model and r.setting == setting}
        refined = {r.image: r for r in rows if r.codec == refined_name and r.setting == setting}
        if not plain or set(plain) - set(refined):
            print(f"  {setting}: {len(set(plain) & set(refined))} of {len(plain)} images refined")
            continue
        finished.append(setting)
        points = [tuple(np.mean([[r.bpp, r.psnr] for r in rs.values()], axis=0)) for rs in (plain, refined)]
        encode = [statistics.median(r.encode_s for r in rs.values()) for rs in (plain, refined)]
        (b0, d0), (b1, d1) = points
        gain = gain_at_equal_rate(ladder, points[0], points[1])
        line = (
            f"  {setting}: {b0:.4f} bpp {d0:.3f} dB -> {b1:.4f} bpp {d1:.3f} dB ({100 * (b1 / b0 - 1):+.2f}% bits,"
            f" {d1 - d0:+.3f} dB), at equal rate {equal_rate(gain, points)};"
            f" encode {encode[0]:.2f} -> {encode[1]:.1f} s"
        )
        for name, anchor in classical.items():
            deltas = [delta_at_rate(anchor, (np.array([b]), np.array([d]))) for b, d in points]
            line += "; vs " + name + " " + " -> ".join("n/a" if x is None else f"{x:+.2f}" for x in deltas)
        print(line)
    done = [r for r in rows if r.codec != refined_name or r.setting in finished]
    bd_rates(done, model, refined_name, finished)


def bd_rates(rows: list, model: str, refined_name: str, finished: list[str]) -> None:
    """BD-rates (PSNR, MS-SSIM dB) of the plain ladder and of its finished refined levels against
    each classical codec of the log, and of the refined levels against the plain ladder."""
    if len(finished) < 2:
        return
    print(f"BD-rate over the overlapping range, {refined_name} at {', '.join(finished)}:")
    references = [c for c in ("jpeg", "webp", "avif", "jpeg2000") if any(r.codec == c for r in rows)]
    for reference in [*references, model]:
        cells = []
        for codec in (model, refined_name):
            if codec == reference:
                continue
            numbers = [bd_metrics(curve(rows, reference, m), curve(rows, codec, m))["bd_rate"] for m in METRICS]
            cells.append(f"{codec} " + " / ".join("n/a" if x is None else f"{x:+.1f}%" for x in numbers))
        print(f"  against {reference} (PSNR / MS-SSIM dB): " + "; ".join(cells))


METRICS = ("psnr", "ms_ssim_db")


def equal_rate(gain: float | None, points: list[tuple[float, float]]) -> str:
    """The gain at equal rate, or where the refined point lies outside the ladder's range and
    has fewer bits and more PSNR than the plain one, that it dominates it."""
    (b0, d0), (b1, d1) = points
    if gain is not None:
        return f"{gain:+.3f} dB"
    return "n/a (outside the ladder; dominates the plain point)" if b1 <= b0 and d1 >= d0 else "n/a"


if __name__ == "__main__":
    main()
