"""``vqcodec eval``: measure codecs on a folder and write report.json, report.md and report.html.

The report holds every per-image number, mean rate-distortion curves, BD-rate and BD-PSNR
against an anchor codec, PSNR-bpp and MS-SSIM(dB)-bpp plots (with CompressAI's published Kodak
curves, dashed, when the folder is Kodak) and, in the HTML, the first image side by side at
matched rates in the comparison viewer (vqcodec.viewer).
"""

from __future__ import annotations

import base64
import html
import json
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np

from vqcodec.data import image_files, load_rgb
from vqcodec.errors import VQCodecError
from vqcodec.evaluation import (
    CLASSICAL,
    Decoder,
    Encoder,
    Measurement,
    MeasurementLog,
    as_dicts,
    bd_metrics,
    classical_points,
    curve,
    delta_at_rate,
    measure,
    ms_ssim_db,
    run_classical,
    run_jobs,
)
from vqcodec.hardware import machine
from vqcodec.refine import REFINE_RATE, REFINE_STEPS
from vqcodec.viewer import Variant, measured, viewer_html

REFINED = "+refine"  # NAME+refine, NAME+refineN: the model's levels encoded with refinement, a curve of its own


def learned_spec(codec: str) -> tuple[str, int]:
    """A learned codec of the report -> (model name, refinement steps): ``vq`` -> ("vq", 0),
    ``vq+refine`` -> ("vq", REFINE_STEPS), ``vq+refine20`` -> ("vq", 20)."""
    name, refined, steps = codec.partition(REFINED)
    if not refined:
        return name, 0
    if steps and not steps.isdigit():
        raise ValueError(f"bad codec {codec!r}: refinement steps must be a number, as in {name}{REFINED}20")
    return name, int(steps) if steps else REFINE_STEPS


def learned_levels(codec: str) -> list[tuple[str, str, str]]:
    """(setting, weights file, what codes it: the weights id, and the rate weight of a refined
    model) for every shipped level of a learned model (``learned_spec``)."""
    from vqcodec.zoo import shipped

    name, refine = learned_spec(codec)
    method = f" rate={REFINE_RATE}" if refine else ""  # refined files depend on the refinement's rate weight too
    return [(f"q{i.quality}", str(i.path), i.model_id.hex() + method) for i in shipped() if i.name == name]


def learned_points(codec: str, device: str = "cpu") -> list[tuple[str, Encoder, Decoder, str]]:
    """(setting, encode, decode, what codes it) for every shipped level of a learned model."""
    from vqcodec.api import load_codec

    refine = learned_spec(codec)[1]
    levels = [(setting, load_codec(path, device=device), model) for setting, path, model in learned_levels(codec)]
    return [(setting, partial(m.compress, refine=refine), m.decompress, model) for setting, m, model in levels]


def measure_all(
    files: list[Path], codecs: list[str], workers: int, device: str = "cpu", log: MeasurementLog | None = None
) -> list[Measurement]:
    """Every image with every codec at each of its rate points, in ``workers`` processes (one
    on a GPU); what ``log`` holds is reused."""
    log = log or MeasurementLog()
    rows: list[Measurement] = []
    for codec in codecs:
        if codec in CLASSICAL:
            rows += run_classical(codec, files, workers, log)
            continue
        levels = learned_levels(codec)
        if not levels:
            raise ValueError(f"unknown codec {codec!r}: not a classical codec and no shipped model of that name")
        jobs = [LearnedJob(str(p), codec, s, weights, model, device) for s, weights, model in levels for p in files]
        todo = [j for j in jobs if not log.get(Path(j.path).name, codec, j.setting, j.model)]
        run_jobs(_learned_job, todo, workers if device == "cpu" else 1, log, codec)
        rows += [log.get(Path(j.path).name, codec, j.setting, j.model) for j in jobs]
    return rows


class LearnedJob(NamedTuple):
    """One image at one level of a learned codec: what a worker process measures."""

    path: str
    codec: str
    setting: str
    weights: str
    model: str
    device: str


def _learned_job(job: LearnedJob) -> Measurement:
    """One image at one level (a weights file) of a learned codec (``learned_spec``), in this
    process (a worker loads each level once)."""
    from vqcodec.api import load_codec

    level = load_codec(job.weights, device=job.device)
    encode = partial(level.compress, refine=learned_spec(job.codec)[1])
    name = Path(job.path).name
    return measure(name, job.codec, job.setting, load_rgb(job.path), encode, level.decompress, job.model)


def published_anchors(folder: Path) -> dict[str, dict]:
    """CompressAI's published Kodak curves: name -> {"bpp": [...], "psnr": [...], "ms_ssim": [...]}."""
    out = {}
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        res = data["results"]
        out[f"{data.get('name', path.stem)} (CompressAI, published)"] = {
            "bpp": res["bpp"],
            "psnr": res["psnr-rgb"],
            "ms_ssim": res.get("ms-ssim-rgb"),
        }
    return out


def summary_table(rows: list[Measurement], codecs: list[str], anchor: str) -> list[dict]:
    """One row per codec: rate range, and BD numbers against the anchor (PSNR and MS-SSIM dB)."""
    table = []
    for codec in codecs:
        bpp, psnr = curve(rows, codec, "psnr")
        _, msdb = curve(rows, codec, "ms_ssim_db")
        entry = {
            "codec": codec,
            "points": len(bpp),
            "bpp_min": float(bpp.min()),
            "bpp_max": float(bpp.max()),
            "psnr_min": float(psnr.min()),
            "psnr_max": float(psnr.max()),
        }
        if codec != anchor:
            psnr_bd = bd_metrics(curve(rows, anchor, "psnr"), (bpp, psnr))
            ms_bd = bd_metrics(curve(rows, anchor, "ms_ssim_db"), (bpp, msdb))
            entry |= {
                "bd_rate_psnr": psnr_bd["bd_rate"],
                "bd_psnr": psnr_bd["bd_psnr"],
                "bd_rate_ms_ssim": ms_bd["bd_rate"],
                "psnr_vs_anchor_at_rate": delta_at_rate(curve(rows, anchor, "psnr"), (bpp, psnr)),
            }
        table.append(entry)
    return table


BASELINES = ("ae", "vae")


def baseline_comparison(rows: list[Measurement], codecs: list[str]) -> list[dict]:
    """What vector quantization and the PixelCNN prior buy: every other learned codec against
    each scalar-quantization baseline, as PSNR and MS-SSIM (dB) differences at the same rate
    (the baseline interpolated) and BD-rate where both have two or more rate points."""
    out = []
    for base in [b for b in BASELINES if b in codecs]:
        for codec in [c for c in codecs if c != base and c not in CLASSICAL]:
            bd = bd_metrics(curve(rows, base, "psnr"), curve(rows, codec, "psnr"))
            out.append(
                {
                    "codec": codec,
                    "baseline": base,
                    "psnr_at_rate": delta_at_rate(curve(rows, base, "psnr"), curve(rows, codec, "psnr")),
                    "ms_ssim_db_at_rate": delta_at_rate(
                        curve(rows, base, "ms_ssim_db"), curve(rows, codec, "ms_ssim_db")
                    ),
                    "bd_rate_psnr": bd["bd_rate"],
                    "budget": f"{core_hours(codec)} / {core_hours(base)}",
                }
            )
    return out


def core_hours(codec: str) -> str:
    """A learned model's training core-hours, as a table cell."""
    from vqcodec.zoo import training_core_hours

    try:
        spent = training_core_hours(learned_spec(codec)[0])
    except VQCodecError:
        return "n/a"
    if not spent.hours:
        return "not recorded"
    cell = f"{spent.hours:.1f}" + (" (in part estimated)" if spent.estimated else "")
    cell += "" if spent.complete else " + unrecorded"
    return cell + (f" + {spent.gpu_hours:.2f} GPU-h" if spent.gpu_hours else "")


def level_curve(rows: list[Measurement], codec: str, setting: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """One rate point of a codec, as a (bpp, metric) curve of one point."""
    return curve([r for r in rows if r.setting == setting], codec, metric)


def published_curve(data: dict, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """A published anchor's (bpp, PSNR or MS-SSIM dB) curve, or None where it has no such numbers."""
    if metric == "psnr":
        return np.array(data["bpp"]), np.array(data["psnr"])
    if not data.get("ms_ssim"):
        return None
    return np.array(data["bpp"]), np.array([ms_ssim_db(v) for v in data["ms_ssim"]])


def level_standings(rows: list[Measurement], codecs: list[str], anchors: dict[str, dict]) -> list[dict]:
    """Where each level of each learned codec stands: its PSNR minus each reference's at the same
    rate (the reference interpolated; None outside its measured range), references being the
    classical codecs of this run and the published curves."""
    references = {c: curve(rows, c, "psnr") for c in codecs if c in CLASSICAL}
    references |= {name: published_curve(data, "psnr") for name, data in anchors.items()}
    out = []
    for codec in [c for c in codecs if c not in CLASSICAL]:
        points = {s: level_curve(rows, codec, s, "psnr") for s in {r.setting for r in rows if r.codec == codec}}
        for setting, point in sorted(points.items(), key=lambda item: float(item[1][0][0])):
            out.append(
                {
                    "codec": codec,
                    "setting": setting,
                    "bpp": float(point[0][0]),
                    "psnr": float(point[1][0]),
                    "ms_ssim_db": float(level_curve(rows, codec, setting, "ms_ssim_db")[1][0]),
                    "psnr_vs": {name: delta_at_rate(ref, point) for name, ref in references.items()},
                }
            )
    return out


def reference_bd(rows: list[Measurement], codecs: list[str]) -> list[dict]:
    """BD-rate of every learned codec against every classical one, in PSNR and in MS-SSIM (dB)."""
    out = []
    for codec in [c for c in codecs if c not in CLASSICAL]:
        for ref in [c for c in codecs if c in CLASSICAL]:
            psnr = bd_metrics(curve(rows, ref, "psnr"), curve(rows, codec, "psnr"))
            ms = bd_metrics(curve(rows, ref, "ms_ssim_db"), curve(rows, codec, "ms_ssim_db"))
            out.append(
                {"codec": codec, "reference": ref, "bd_rate_psnr": psnr["bd_rate"], "bd_rate_ms_ssim": ms["bd_rate"]}
            )
    return out


def standings_cells(standings: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the per-level table."""
    refs = list(standings[0]["psnr_vs"]) if standings else []
    head = ["codec", "level", "bpp", "PSNR (dB)", "MS-SSIM (dB)", *[f"vs {r}" for r in refs]]
    body = [
        [s["codec"], s["setting"], f"{s['bpp']:.3f}", f"{s['psnr']:.2f}", f"{s['ms_ssim_db']:.2f}"]
        + ["n/a" if s["psnr_vs"][r] is None else f"{s['psnr_vs'][r]:+.2f}" for r in refs]
        for s in standings
    ]
    return head, body


def bd_cells(bd: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the learned-against-classical BD-rate table."""
    head = ["codec", "reference", "BD-rate (PSNR)", "BD-rate (MS-SSIM dB)"]

    return head, [[b["codec"], b["reference"], percent(b["bd_rate_psnr"]), percent(b["bd_rate_ms_ssim"])] for b in bd]


def plot(rows: list[Measurement], codecs: list[str], anchors: dict[str, dict], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for codec in codecs:
        bpp, value = curve(rows, codec, metric)
        ax.plot(bpp, value, "o-", label=codec, linewidth=2 if codec in ("vq", "ae", "vae") else 1.2)
    for name, data in anchors.items():
        published = published_curve(data, metric)
        if published is not None:
            ax.plot(*published, "--", alpha=0.6, label=name)
    lo, hi = min(curve(rows, c)[0].min() for c in codecs), max(curve(rows, c)[0].max() for c in codecs)
    ax.set_xlim(0, min(hi, 2.0) * 1.05 if hi > lo else None)
    ax.set_xlabel("bits per pixel (whole file)")
    ax.set_ylabel("PSNR (dB, RGB)" if metric == "psnr" else "MS-SSIM (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def gallery(rows: list[Measurement], files: list[Path], codecs: list[str], device: str = "cpu") -> list[Variant]:
    """The first image, whole, for the viewer: the original and each codec at its rate point
    nearest the first learned codec's rate."""
    path = files[0]
    img = load_rgb(path)
    target_codec = next((c for c in codecs if c not in CLASSICAL), codecs[0])
    target = np.mean([r.bpp for r in rows if r.codec == target_codec and r.image == path.name])
    variants = [Variant("original", "original", img)]
    for codec in codecs:
        cands = [r for r in rows if r.codec == codec and r.image == path.name]
        best = min(cands, key=lambda r: abs(r.bpp - target))
        points = classical_points(codec) if codec in CLASSICAL else learned_points(codec, device)
        enc, dec = next((e, d) for s, e, d, *_ in points if s == best.setting)
        data = enc(img)
        variants.append(measured(codec, f"{codec} {best.setting}", img, data, dec(data)))
    return variants


def percent(v: float | None) -> str:
    """A signed percentage cell (BD-rates)."""
    return "n/a" if v is None else f"{v:+.1f}%"


def decibels(v: float | None) -> str:
    """A signed decibel cell (BD-PSNR, differences at the same rate)."""
    return "n/a" if v is None else f"{v:+.2f}"


def summary_cells(table: list[dict], anchor: str) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the main table (one row per codec, BD numbers against ``anchor``),
    each with its unit: what both the Markdown and the HTML report show."""
    head = [
        "codec",
        "points",
        "bpp range",
        "PSNR range (dB)",
        "BD-rate (PSNR)",
        "BD-PSNR (dB)",
        "BD-rate (MS-SSIM dB)",
        f"PSNR vs {anchor} at the same bpp (dB)",
    ]
    body = []
    for t in table:
        if t["codec"] == anchor:
            bd = ["anchor"] * 4
        else:
            bd = [
                percent(t.get("bd_rate_psnr")),
                decibels(t.get("bd_psnr")),
                percent(t.get("bd_rate_ms_ssim")),
                decibels(t.get("psnr_vs_anchor_at_rate")),
            ]
        ranges = [f"{t['bpp_min']:.3f}-{t['bpp_max']:.3f}", f"{t['psnr_min']:.2f}-{t['psnr_max']:.2f}"]
        body.append([t["codec"], str(t["points"]), *ranges, *bd])
    return head, body


def comparison_rows(comparison: list[dict]) -> list[list[str]]:
    """Cells of the baseline comparison table."""
    return [
        [
            c["codec"],
            c["baseline"],
            "n/a (outside its range)" if c["psnr_at_rate"] is None else f"{c['psnr_at_rate']:+.2f}",
            decibels(c["ms_ssim_db_at_rate"]),
            percent(c["bd_rate_psnr"]),
            c["budget"],
        ]
        for c in comparison
    ]


COMPARISON_HEAD = [
    "codec",
    "baseline",
    "PSNR at the same bpp (dB)",
    "MS-SSIM (dB) at the same bpp",
    "BD-rate (PSNR)",
    "training core-hours (codec / baseline)",
]


def markdown_table(head: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *["| " + " | ".join(r) + " |" for r in body]]


def write_markdown(
    table: list[dict],
    comparison: list[dict],
    standings: list[dict],
    classical: list[dict],
    anchor: str,
    dataset: str,
    out: Path,
) -> str:
    lines = [
        f"# Rate-distortion report: {dataset}",
        "",
        "Rates are 8 x whole-file bytes / pixels; PSNR on full RGB images;",
        f"BD against **{anchor}** over the overlapping range (negative BD-rate = fewer bits than the anchor",
        "for the same quality). n/a: fewer than 2 rate points. Every codec codes the images' RGB colour",
        "(an image with alpha is read as its RGB channels: vqcodec would code its alpha losslessly beside",
        "the colour, at a cost no classical anchor here pays), with no metadata in the files.",
        "",
    ]
    lines += markdown_table(*summary_cells(table, anchor))
    if comparison:
        lines += ["", "Against the scalar-quantization baselines (difference over the baseline at the same rate):", ""]
        lines += markdown_table(COMPARISON_HEAD, comparison_rows(comparison))
    if classical:
        lines += ["", "Learned codecs against every classical codec (BD-rate over the overlapping range):", ""]
        lines += markdown_table(*bd_cells(classical))
    if standings:
        lines += ["", "Each level: PSNR minus the reference's at the same bpp (dB; n/a: outside its range):", ""]
        lines += markdown_table(*standings_cells(standings))
    lines += ["", "![PSNR](rd-psnr.png)", "", "![MS-SSIM](rd-msssim.png)", ""]
    text = "\n".join(lines)
    (out / "report.md").write_text(text)
    return text


def write_html(
    table: list[dict],
    comparison: list[dict],
    standings: list[dict],
    classical: list[dict],
    rows: list[Measurement],
    variants: list[Variant],
    anchor: str,
    dataset: str,
    out: Path,
) -> None:
    def embed(name: str) -> str:
        return "data:image/png;base64," + base64.b64encode((out / name).read_bytes()).decode()

    head, body = summary_cells(table, anchor)
    per_image = [
        [
            r.image,
            r.codec,
            r.setting,
            f"{r.bpp:.4f}",
            f"{r.psnr:.2f}",
            f"{r.ms_ssim:.4f}",
            f"{r.encode_s:.3f}",
            f"{r.decode_s:.3f}",
        ]
        for r in rows
    ]

    def table(h: list[str], rows_: list[list]) -> str:
        th = "".join(f"<th>{html.escape(str(x))}</th>" for x in h)
        trs = "".join("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in r) + "</tr>" for r in rows_)
        return f"<table><tr>{th}</tr>{trs}</table>"

    against = ""
    if comparison:
        against = "<h2>Against the scalar-quantization baselines</h2>" + table(
            COMPARISON_HEAD, comparison_rows(comparison)
        )
    if classical:
        against += "<h2>Learned codecs against the classical ones</h2>" + table(*bd_cells(classical))
    if standings:
        against += "<h2>Each level against the references (PSNR difference at the same bpp, dB)</h2>" + table(
            *standings_cells(standings)
        )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>vqcodec RD report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px}}figure{{display:inline-block;margin:4px}}
figure img{{image-rendering:pixelated;width:256px}}</style></head><body>
<h1>Rate-distortion report: {html.escape(dataset)}</h1>
<p>Rate = 8 x whole-file bytes / pixels. PSNR on full RGB images. BD against {html.escape(anchor)}.
Dashed curves: results published by CompressAI on Kodak (their machines), for reference.</p>
{table(head, body)}
{against}
<h2>Curves</h2><img src="{embed("rd-psnr.png")}"><img src="{embed("rd-msssim.png")}">
<h2>Side by side at matched rate (the first image; choose any two, zoom and pan)</h2>
{viewer_html(variants)}
<h2>Every measurement</h2>{table(["image", "codec", "setting", "bpp", "PSNR", "MS-SSIM", "enc s", "dec s"], per_image)}
</body></html>"""
    (out / "report.html").write_text(page)


def run_eval(
    dataset: str,
    codecs: list[str],
    out: str,
    limit: int | None = None,
    workers: int = 1,
    anchor: str = "jpeg",
    anchors_dir: str | None = None,
    device: str = "cpu",
    measurements: str | None = None,
) -> dict:
    """Measure ``codecs`` on the images in ``dataset`` and write the report into ``out``; the
    learned ones run on ``device``. ``measurements``: a JSON-lines file that keeps every
    measurement as it is made and gives back those already there (``MeasurementLog``)."""
    files = image_files(dataset)[:limit]
    if not files:
        raise ValueError(f"no images in {dataset}")
    if anchor not in codecs:
        codecs = [anchor, *codecs]
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = measure_all(files, codecs, workers, device, MeasurementLog(measurements))
    if anchors_dir is None and Path(dataset).resolve().name == "kodak":
        guess = Path(dataset).resolve().parent.parent / "anchors" / "compressai-kodak"
        anchors_dir = str(guess) if guess.is_dir() else None
    anchors = published_anchors(Path(anchors_dir)) if anchors_dir else {}
    table = summary_table(rows, codecs, anchor)
    comparison = baseline_comparison(rows, codecs)
    standings, bd = level_standings(rows, codecs, anchors), reference_bd(rows, codecs)
    plot(rows, codecs, anchors, "psnr", out_dir / "rd-psnr.png")
    plot(rows, codecs, anchors, "ms_ssim_db", out_dir / "rd-msssim.png")
    variants = gallery(rows, files, codecs, device)
    report = {
        "dataset": str(dataset),
        "images": [p.name for p in files],
        "anchor": anchor,
        "summary": table,
        "against_baselines": comparison,
        "against_classical": bd,
        "levels": standings,
        "published_anchors": anchors,
        "machine": machine(),
        "measurements": as_dicts(rows),
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    write_markdown(table, comparison, standings, bd, anchor, Path(dataset).name, out_dir)
    write_html(table, comparison, standings, bd, rows, variants, anchor, Path(dataset).name, out_dir)
    return report
