"""What encoder-side refinement (``vqcodec compress --refine N``) buys at one level: whole files
of every image with the encoder's nearest codes and with N refinement steps, decoded, then the
mean rate (8 x file bytes / pixels) and PSNR of each, the encode times, and the gain at equal
rate: the refined point's PSNR against the ladder's Kodak curve (the levels' own points from
their weights' metadata, interpolated linearly in bpp as the evaluation report does).

    python bin/refine_gain.py --quality 4 --steps 40 [--images 24] [--folder ../shared/data/kodak] [--device cuda]

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
import time
from pathlib import Path

import numpy as np

from vqcodec.api import load_codec
from vqcodec.data import image_files, load_rgb
from vqcodec.evaluation import (
    MeasurementLog,
    bd_metrics,
    curve,
    delta_at_rate,
    gain_at_equal_rate,
    kodak_curve,
    psnr,
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
    ap.add_argument("--images", type=int, default=24, help="the first N images of the folder")
    ap.add_argument("--folder", type=Path, default=KODAK)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--measurements", type=Path, default=None, help="summarise this evaluation log instead")
    args = ap.parse_args()
    if args.measurements:
        summarise(args.measurements, args.model, args.steps)
        return

    codec = load_codec(args.model, args.quality, args.device)
    rows: dict[int, list[tuple[float, float, float]]] = {0: [], args.steps: []}
    for path in image_files(args.folder)[: args.images]:
        img = load_rgb(path)
        line = [path.name]
        for steps, out in rows.items():
            start = time.perf_counter()
            data = codec.compress(img, steps)
            seconds = time.perf_counter() - start
            decoded = np.asarray(codec.decompress(data))
            out.append((8 * len(data) / (img.width * img.height), psnr(np.asarray(img), decoded), seconds))
            line.append(f"refine {steps}: {out[-1][0]:.4f} bpp {out[-1][1]:.3f} dB {seconds:.1f} s")
        print(", ".join(line), flush=True)

    (plain_bpp, plain_db, _), (bpp, db, _) = (np.mean(out, axis=0) for out in rows.values())
    plain_s, refined_s = (statistics.median(r[2] for r in out) for out in rows.values())
    print(f"{args.model} q{args.quality}, {len(rows[0])} images of {args.folder.name}:")
    print(f"  nearest codes: {plain_bpp:.4f} bpp, {plain_db:.3f} dB, encode median {plain_s:.2f} s")
    print(f"  refine {args.steps}: {bpp:.4f} bpp, {db:.3f} dB, encode median {refined_s:.2f} s")
    print(f"  change: {100 * (bpp / plain_bpp - 1):+.2f}% bits, {db - plain_db:+.3f} dB")
    gain = gain_at_equal_rate(kodak_curve(args.model), (plain_bpp, plain_db), (bpp, db))
    if gain is not None:
        print(f"  against the ladder's Kodak curve (levels' points, linear in bpp): {gain:+.3f} dB at equal rate")


def summarise(log_path: Path, model: str, steps: int) -> None:
    """The refined levels of an evaluation log against its plain ladder and classical codecs."""
    refined_name = model + REFINED + ("" if steps == REFINE_STEPS else str(steps))
    current = {f"q{i.quality}": i.model_id.hex() for i in levels(model)}  # other models' lines are left out
    method = {model: "", refined_name: f" rate={REFINE_RATE}"}
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
