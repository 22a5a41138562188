"""Rate-distortion measurement: real files, whole images, honest rates.

Rate is always 8 x (bytes of the whole compressed file) / (width x height). Distortion is
computed on the full decoded image against the original 8-bit RGB pixels: PSNR over all
three channels, and MS-SSIM (Wang, Simoncelli, Bovik 2003) via pytorch-msssim, also given
in dB as -10 log10(1 - MS-SSIM) as the field reports it.
"""

from __future__ import annotations

import io
import json
import math
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vqcodec.data import image_files, load_rgb

Encoder = Callable[[Image.Image], bytes]
Decoder = Callable[[bytes], Image.Image]


@dataclass
class Measurement:
    """One image coded at one rate point."""

    image: str
    codec: str
    setting: str
    bytes: int
    bpp: float
    psnr: float
    ms_ssim: float
    ms_ssim_db: float
    encode_s: float
    decode_s: float
    model: str = ""  # what coded it: a learned level's weights id, or the Pillow of a classical codec

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.image, self.codec, self.setting, self.model


class MeasurementLog:
    """Measurements appended to a JSON-lines file as they are made, and those already in it
    reused (same image, codec, setting and model), so that a long evaluation (refined levels on a
    CPU take minutes an image) can be interrupted and resumed, or run a few codecs at a time. A
    model's weights id is part of the key: a retrained level is measured again. No path: a log
    that keeps nothing."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else None
        self.done: dict[tuple[str, str, str, str], Measurement] = {}
        if self.path and self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    m = Measurement(**json.loads(line))
                except (ValueError, TypeError):  # a line cut short when a run was killed
                    continue
                self.done[m.key] = m

    def get(self, image: str, codec: str, setting: str, model: str) -> Measurement | None:
        return self.done.get((image, codec, setting, model))

    def add(self, m: Measurement) -> Measurement:
        self.done[m.key] = m
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps(asdict(m)) + "\n")
        return m


def psnr_db(mse: float, peak: float = 255.0) -> float:
    """PSNR in dB of a mean squared error for signals of the given peak (infinite at 0)."""
    mse = float(mse)
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images of equal shape (infinite when identical)."""
    return psnr_db(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM of two HxWx3 uint8 images with pytorch-msssim's standard 5 scales and 11-tap window.

    Images with a side under 161 px cannot take 4 downsamplings with that window: they get a
    smaller window (side > 16 * (window - 1)) and, below 33 px, single-scale SSIM.
    """
    from pytorch_msssim import ms_ssim as _ms_ssim
    from pytorch_msssim import ssim as _ssim

    x = torch.tensor(a, dtype=torch.float64).permute(2, 0, 1)[None]
    y = torch.tensor(b, dtype=torch.float64).permute(2, 0, 1)[None]
    side = min(a.shape[0], a.shape[1])
    if side > 32:
        win = min(11, 2 * ((side - 1) // 32) + 1)
        return float(_ms_ssim(x, y, data_range=255, win_size=win))
    win = max(1, min(11, side if side % 2 else side - 1))
    return float(_ssim(x, y, data_range=255, win_size=win))


def ms_ssim_db(value: float) -> float:
    return math.inf if value >= 1 else -10 * math.log10(1 - value)


def measure(
    name: str, codec: str, setting: str, img: Image.Image, encode: Encoder, decode: Decoder, model: str = ""
) -> Measurement:
    """Code one RGB image both ways and measure rate, distortion and time."""
    start = time.perf_counter()
    data = encode(img)
    mid = time.perf_counter()
    out = decode(data).convert("RGB")
    end = time.perf_counter()
    a, b = np.asarray(img), np.asarray(out)
    ms = ms_ssim(a, b)
    return Measurement(
        name,
        codec,
        setting,
        len(data),
        8 * len(data) / (img.width * img.height),
        psnr(a, b),
        ms,
        ms_ssim_db(ms),
        mid - start,
        end - mid,
        model,
    )


def pillow_codec(fmt: str, **options) -> tuple[Encoder, Decoder]:
    """Encoder/decoder pair for a Pillow format (JPEG, WEBP, AVIF, JPEG2000)."""

    def encode(img: Image.Image) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **options)
        return buf.getvalue()

    def decode(data: bytes) -> Image.Image:
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")

    return encode, decode


def measure_folder(
    folder: str | Path,
    codec: str,
    setting: str,
    encode: Encoder,
    decode: Decoder,
    limit: int | None = None,
    model: str = "",
    log: MeasurementLog | None = None,
) -> list[Measurement]:
    """Every image of ``folder`` at one rate point; what ``log`` holds for ``model`` is reused,
    and what is measured is added to it."""
    log = log or MeasurementLog()
    return [
        log.get(p.name, codec, setting, model)
        or log.add(measure(p.name, codec, setting, load_rgb(p), encode, decode, model))
        for p in image_files(folder)[:limit]
    ]


def summarize(rows: list[Measurement]) -> dict[str, float]:
    """Mean of each numeric field over images (the convention of CompressAI's published curves)."""
    keys = ["bpp", "psnr", "ms_ssim", "ms_ssim_db", "encode_s", "decode_s"]
    return {k: float(np.mean([getattr(r, k) for r in rows])) for k in keys} | {"images": len(rows)}


def as_dicts(rows: list[Measurement]) -> list[dict]:
    return [asdict(r) for r in rows]


# Quality sweeps of the classical codecs, wide enough to cover the learned codecs' range.
CLASSICAL: dict[str, tuple[str, str, list, dict]] = {
    "jpeg": ("JPEG", "quality", [5, 10, 15, 20, 30, 40, 50, 60, 75, 90], {}),
    "webp": ("WEBP", "quality", [1, 5, 10, 20, 30, 50, 70, 90], {"method": 6}),
    "avif": ("AVIF", "quality", [5, 15, 25, 35, 45, 60, 75], {"speed": 6}),
    # JPEG 2000 is driven by compression ratio (24 bpp / ratio = target bpp).
    "jpeg2000": ("JPEG2000", "ratio", [240, 120, 80, 48, 32, 24, 16], {"quality_mode": "rates"}),
}


def classical_points(codec: str) -> list[tuple[str, Encoder, Decoder]]:
    """(setting, encoder, decoder) for each rate point of a classical codec."""
    fmt, knob, values, fixed = CLASSICAL[codec]
    points = []
    for v in values:
        options = dict(fixed, **({"quality_layers": [v]} if knob == "ratio" else {knob: v}))
        points.append((f"{knob}={v}", *pillow_codec(fmt, **options)))
    return points


CLASSICAL_MODEL = f"Pillow {Image.__version__}"  # the codec libraries come with Pillow's wheels


def _classical_job(args: tuple[str, int, str]) -> Measurement:
    path, index, codec = args
    setting, encode, decode = classical_points(codec)[index]
    return measure(Path(path).name, codec, setting, load_rgb(path), encode, decode, CLASSICAL_MODEL)


def run_jobs(job: Callable[[tuple], Measurement], todo: list[tuple], workers: int, log: MeasurementLog, desc: str):
    """``job`` on each of ``todo`` (picklable arguments), in ``workers`` processes of one torch
    thread each, every measurement added to ``log`` as it comes back, in order."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    bar = {"desc": desc, "total": len(todo), "leave": False, "dynamic_ncols": True}
    if workers <= 1 or len(todo) <= 1:
        for args in tqdm(todo, **bar):
            log.add(job(args))
        return
    # spawn, not fork: forking a process whose torch thread pools are running deadlocks the children
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=spawn, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        for m in tqdm(pool.map(job, todo), **bar):
            log.add(m)


def run_classical(
    codec: str, files: list[Path], workers: int = 1, log: MeasurementLog | None = None
) -> list[Measurement]:
    """Every image at every rate point of a classical codec, in ``workers`` processes (those in
    ``log`` taken from it, the others added to it)."""
    log = log or MeasurementLog()
    settings = [s for s, _, _ in classical_points(codec)]
    jobs = [(str(p), i, codec) for p in files for i in range(len(settings))]
    todo = [j for j in jobs if not log.get(Path(j[0]).name, codec, settings[j[1]], CLASSICAL_MODEL)]
    run_jobs(_classical_job, todo, workers, log, codec)
    return [log.get(Path(p).name, codec, settings[i], CLASSICAL_MODEL) for p, i, _ in jobs]


def curve(rows: list[Measurement], codec: str, metric: str = "psnr") -> tuple[np.ndarray, np.ndarray]:
    """Mean (bpp, metric) per rate point of one codec, sorted by rate."""
    points: dict[str, list[Measurement]] = {}
    for r in rows:
        if r.codec == codec:
            points.setdefault(r.setting, []).append(r)
    pairs = sorted((np.mean([m.bpp for m in ms]), np.mean([getattr(m, metric) for m in ms])) for ms in points.values())
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def monotone(rate: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points of a curve, by rate, that improve on every cheaper point (interpolation needs a monotone curve)."""
    keep_r, keep_d = [], []
    for r, d in sorted(zip(rate.tolist(), dist.tolist(), strict=True)):
        if np.isfinite(d) and (not keep_d or (d > keep_d[-1] and r > keep_r[-1])):
            keep_r.append(r)
            keep_d.append(d)
    return np.array(keep_r), np.array(keep_d)


def delta_at_rate(anchor: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> float | None:
    """Mean quality difference of ``test`` over the anchor at the same rate (anchor interpolated
    linearly in bpp), over the test points inside the anchor's range: a comparison that also
    works for a codec with a single rate point, where BD numbers cannot be computed."""
    ra, da = monotone(*anchor)
    rt, dt = test
    inside = (rt >= ra.min()) & (rt <= ra.max()) if len(ra) else np.zeros(len(rt), dtype=bool)
    return float(np.mean(dt[inside] - np.interp(rt[inside], ra, da))) if inside.any() else None


def kodak_curve(model: str) -> tuple[np.ndarray, np.ndarray]:
    """A shipped model's Kodak curve: each level's (bpp, PSNR) from its weights' metadata."""
    from vqcodec.zoo import levels

    points = sorted((i.meta["metrics"]["kodak_bpp"], i.meta["metrics"]["kodak_psnr"]) for i in levels(model))
    return np.array([p[0] for p in points]), np.array([p[1] for p in points])


def gain_at_equal_rate(
    curve: tuple[np.ndarray, np.ndarray], before: tuple[float, float], after: tuple[float, float]
) -> float | None:
    """How far (dB) the (bpp, PSNR) point ``after`` lies above ``curve`` at its rate, less how far
    ``before`` does: the gain of a change at equal rate. Measured on a subset of images (or
    another folder than the curve's), the difference cancels what the subset puts off the curve."""
    offsets = [delta_at_rate(curve, (np.array([r]), np.array([d]))) for r, d in (before, after)]
    return None if None in offsets else offsets[1] - offsets[0]


def bd_metrics(anchor: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> dict[str, float | None]:
    """BD-rate (%) and BD-PSNR (dB) of ``test`` against ``anchor`` over their overlap (Bjontegaard,
    VCEG-M33, with the `bjontegaard` package's pchip interpolation). None where the curves have
    fewer than 2 points or do not overlap."""
    import bjontegaard as bd

    (ra, da), (rt, dt) = monotone(*anchor), monotone(*test)
    if len(ra) < 2 or len(rt) < 2 or min(da.max(), dt.max()) <= max(da.min(), dt.min()):
        return {"bd_rate": None, "bd_psnr": None}
    kw = {"method": "pchip", "require_matching_points": False, "min_overlap": 0}
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {
                "bd_rate": float(bd.bd_rate(ra, da, rt, dt, **kw)),
                "bd_psnr": float(bd.bd_psnr(ra, da, rt, dt, **kw)),
            }
