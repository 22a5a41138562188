"""The ``vqcodec`` command line: compress, decompress, info, models, compare, eval, train.

Every error is one line on stderr and a non-zero exit status (``--debug`` shows the
traceback). Outputs are written atomically and never overwrite a file without ``--force``.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import click

from vqcodec.errors import VQCodecError, failure_message

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif"}


class Failed(click.ClickException):
    """An error already reported: exit with status 1 and print nothing more."""

    def show(self, file=None) -> None:
        pass


def fail(message: str) -> None:
    click.echo(f"vqcodec: error: {message}", err=True)


STDIO = "-"  # as an input: standard input; as an output: standard output


def file_mode() -> int:
    """The permissions a new file gets from open(): 0666 less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def refuse_overwrite(path: Path, force: bool) -> None:
    """An existing output file is replaced only with --force (standard output is not a file)."""
    if str(path) != STDIO and path.exists() and not force:
        raise VQCodecError(f"{path} exists (use --force to overwrite)")


def write_atomic(path: Path, data: bytes, force: bool) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename (refusing to overwrite), or
    to standard output when ``path`` is ``-``. The file gets the usual permissions (0666 less
    the umask), not the temporary file's private ones."""
    if str(path) == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    refuse_overwrite(path, force)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise VQCodecError(f"{path}: the output directory {parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_input(src: Path) -> bytes:
    """The bytes of an input file, or of standard input for ``-``."""
    if str(src) == STDIO:
        return sys.stdin.buffer.read()
    try:
        return src.read_bytes()
    except FileNotFoundError as e:
        raise VQCodecError(f"{src}: no such file") from e
    except IsADirectoryError as e:
        raise VQCodecError(f"{src}: is a directory") from e


def expand(inputs: tuple[str, ...], suffixes: set[str]) -> list[Path]:
    """Input paths, with directories replaced by the matching files inside them."""
    out: list[Path] = []
    for name in inputs:
        p = Path(name)
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in suffixes))
        else:
            out.append(p)
    if sum(str(p) == STDIO for p in out) > 1:
        raise VQCodecError("standard input (-) can be read only once")
    return out


def output_path(src: Path, output: str | None, many: bool, suffix: str) -> Path:
    """Where the result for ``src`` goes: next to it, ``output`` (a directory when many; it is
    created), or standard output (``-``, which is also the default for standard input)."""
    if output == STDIO or (output is None and str(src) == STDIO):
        if many:
            raise VQCodecError("standard output (-o -) takes one input only")
        return Path(STDIO)
    if output is None:
        return src.with_suffix(suffix)
    out = Path(output)
    if many or out.is_dir():
        out.mkdir(parents=True, exist_ok=True)
        return out / ((src.stem if str(src) != STDIO else "stdin") + suffix)
    return out


Outcome = dict | Exception  # a job's report of one input, or why it failed


def attempt(job: Callable[[Path], dict], src: Path) -> Outcome:
    """``job(src)``, or the error that made it fail (an input's failure does not stop a batch)."""
    try:
        return job(src)
    except (VQCodecError, OSError) as e:
        return e


def run_batch(ctx: click.Context, files: list[Path], outcomes: Iterable[tuple[Path, Outcome]], as_json: bool) -> None:
    """Report each input's outcome as it comes (a line, or one error line, and go on), with a
    progress bar for many inputs; exit 1 if any failed."""
    from tqdm import tqdm

    debug = ctx.obj["debug"]
    results, failures = [], 0
    to_stdout = False  # once the data goes to standard output, messages go to standard error
    show_bar = len(files) > 1 and not as_json
    for src, outcome in tqdm(outcomes, total=len(files), disable=not show_bar, dynamic_ncols=True, leave=False):
        if isinstance(outcome, Exception):
            failures += 1
            if debug:
                traceback.print_exception(outcome)
            message = failure_message(str(src), outcome)
            results.append({"input": str(src), "error": message})
            fail(message)
            continue
        to_stdout = to_stdout or outcome["output"] == STDIO
        results.append(outcome)
        if not as_json:
            click.echo(outcome["line"], err=to_stdout)
    if as_json:
        click.echo(json.dumps([{k: v for k, v in r.items() if k != "line"} for r in results], indent=2), err=to_stdout)
    elif len(files) > 1:
        click.echo(f"{len(files) - failures} of {len(files)} files done, {failures} failed")
    if failures:
        raise Failed("")


def skipped(src: Path, dst: Path, valid: Callable[[Path], bool], skip_existing: bool) -> dict | None:
    """With --skip-existing, the report of an input whose output exists and reads back valid."""
    if not (skip_existing and str(dst) != STDIO and dst.exists() and valid(dst)):
        return None
    return {"input": str(src), "output": str(dst), "skipped": True, "line": f"{src} -> {dst}: exists, skipped"}


def valid_vqc(path: Path) -> bool:
    from vqcodec.format import unpack_file

    try:
        unpack_file(path.read_bytes())
        return True
    except (VQCodecError, OSError):
        return False


def valid_image(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:  # any reason Pillow cannot read it back: redo it
        return False


def connect_ray(address: str | None):
    """The ``vqcodec.ray`` module, connected to the cluster at ``address`` (or RAY_ADDRESS, or a
    new local one); one clear line when Ray is not installed."""
    try:
        from vqcodec import ray as vqc_ray
    except ImportError as e:
        raise VQCodecError('--ray needs Ray: install it with `python3 -m pip install "vqcodec[ray]"`') from e
    vqc_ray.connect(address)
    return vqc_ray


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(package_name="vqcodec")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """vqcodec: learned image compression (VQ-VAE + integer PixelCNN prior + range coding)."""
    ctx.obj = {"debug": debug}
    if not debug:
        warnings.showwarning = show_warning


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line on stderr, like errors (with --debug: Python's own format)."""
    click.echo(f"vqcodec: warning: {message}", err=True)


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="Output file (one input) or directory (many inputs).")
@click.option("-q", "--quality", type=int, help="Quality level of the model (default: the model's default).")
@click.option(
    "--target-bpp",
    type=float,
    help="Instead of -q: the highest level whose file is at or under this many bits per pixel.",
)
@click.option(
    "--model", default="vq", show_default=True, help="Model name (vq, ae, vae), or a .safetensors weights file."
)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option(
    "--refine",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="vq models: steps spent choosing the indices for the decoded image and their bits (about 40: "
    "higher PSNR for fewer bits, much slower encoding; decoding unchanged).",
)
@click.option("--strip", is_flag=True, help="Drop the ICC profile, EXIF and XMP (kept by default; alpha is kept).")
@click.option("--skip-existing", is_flag=True, help="Skip inputs whose output exists and reads back as a .vqc file.")
@click.option("--ray", "use_ray", is_flag=True, help="Run on a Ray cluster (RAY_ADDRESS, or a new local one).")
@click.option("--ray-address", default=None, help="With --ray: the cluster's address (default: RAY_ADDRESS).")
@click.option("--ray-workers", type=click.IntRange(1), default=None, help="With --ray: workers (default: one per CPU).")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def compress(ctx, inputs, output, quality, target_bpp, model, device, refine, strip, **batch) -> None:
    """Compress images (files or directories of images) into .vqc files."""
    from vqcodec.transcode import CompressOptions, compress_one

    options = CompressOptions(model, quality, target_bpp, refine, strip, device)
    files = expand(inputs, IMAGE_SUFFIXES)
    dsts = {src: output_path(src, output, len(files) > 1, ".vqc") for src in files}

    todo, done = split_existing(files, dsts, valid_vqc, batch["skip_existing"])
    if batch["use_ray"]:
        vqc_ray = connect_ray(batch["ray_address"])
        for src in todo:
            refuse_overwrite(dsts[src], batch["force"])
        remote = vqc_ray.compress_paths([str(src) for src in todo], options, batch["ray_workers"])
        outcomes = remote_outcomes(remote, dsts, report_compressed, batch["force"])
    else:
        codec = options.codec() if todo else None

        def job(src: Path) -> dict:
            dst = dsts[src]
            refuse_overwrite(dst, batch["force"])
            start = time.perf_counter()
            name = "standard input" if str(src) == STDIO else str(src)
            made = compress_one(read_input(src), name, options, codec)
            return report_compressed(src, dst, made, time.perf_counter() - start, batch["force"])

        outcomes = ((src, attempt(job, src)) for src in todo)
    run_batch(ctx, files, itertools.chain(done, outcomes), batch["as_json"])


def remote_outcomes(remote: Iterable, dsts: dict, report: Callable, force: bool) -> Iterator[tuple[Path, Outcome]]:
    """The outcomes of a Ray job as its results arrive: each written and reported by ``report``."""
    for src, made in remote:
        path = Path(src)
        yield path, made if isinstance(made, Exception) else report(path, dsts[path], made, None, force)


def split_existing(files: list[Path], dsts: dict, valid: Callable[[Path], bool], skip: bool):
    """(inputs to do, the reports of those --skip-existing skips)."""
    done = [(src, report) for src in files if (report := skipped(src, dsts[src], valid, skip))]
    skip_set = {src for src, _ in done}
    return [src for src in files if src not in skip_set], done


def report_compressed(src: Path, dst: Path, made, seconds: float | None, force: bool) -> dict:
    """Write a compressed file atomically and say what was made."""
    write_atomic(dst, made.vqc, force)
    took = "" if seconds is None else f", {seconds:.2f} s"
    family, quality = made.model.split(" q")
    return {
        "model": family,
        "quality": int(quality),
        "input": str(src),
        "output": str(dst),
        "bytes": len(made.vqc),
        "width": made.width,
        "height": made.height,
        "bpp": made.bpp,
        "seconds": seconds,
        "line": f"{src} -> {dst}: {made.model}, {len(made.vqc)} bytes, {made.bpp:.4f} bpp{took}",
    }


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="Output image (one input) or directory (many inputs); format from the suffix.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--max-pixels", type=int, default=None, help="Refuse images larger than this (default 128 Mpixel).")
@click.option(
    "--model", default=None, help="Weights file to decode with (default: the shipped model named in the file)."
)
@click.option("--skip-existing", is_flag=True, help="Skip inputs whose output exists and reads back as an image.")
@click.option("--ray", "use_ray", is_flag=True, help="Run on a Ray cluster (RAY_ADDRESS, or a new local one).")
@click.option("--ray-address", default=None, help="With --ray: the cluster's address (default: RAY_ADDRESS).")
@click.option("--ray-workers", type=click.IntRange(1), default=None, help="With --ray: workers (default: one per CPU).")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def decompress(ctx, inputs, output, device, max_pixels, model, **batch) -> None:
    """Decompress .vqc files into images (PNG unless -o names another format)."""
    from vqcodec.codec import MAX_PIXELS
    from vqcodec.transcode import decompress_one, image_format

    files = expand(inputs, {".vqc"})
    dsts = {src: output_path(src, output, len(files) > 1, ".png") for src in files}

    def fmt(dst: Path) -> str:
        try:
            return image_format(dst.suffix if str(dst) != STDIO else ".png")
        except VQCodecError as e:
            raise VQCodecError(f"{dst}: {e}") from e

    def job(src: Path) -> dict:
        dst = dsts[src]
        refuse_overwrite(dst, batch["force"])
        start = time.perf_counter()
        made = decompress_one(read_input(src), fmt(dst), device, model, max_pixels or MAX_PIXELS)
        return report_decompressed(src, dst, made, time.perf_counter() - start, batch["force"])

    todo, done = split_existing(files, dsts, valid_image, batch["skip_existing"])
    if batch["use_ray"]:
        vqc_ray = connect_ray(batch["ray_address"])
        formats = {}
        for src in todo:
            refuse_overwrite(dsts[src], batch["force"])
            formats[str(src)] = fmt(dsts[src])
        remote = vqc_ray.decompress_paths(formats, model, max_pixels or MAX_PIXELS, batch["ray_workers"])
        outcomes = remote_outcomes(remote, dsts, report_decompressed, batch["force"])
    else:
        outcomes = ((src, attempt(job, src)) for src in todo)
    run_batch(ctx, files, itertools.chain(done, outcomes), batch["as_json"])


def report_decompressed(src: Path, dst: Path, made, seconds: float | None, force: bool) -> dict:
    """Write a decompressed image atomically and say what was made."""
    write_atomic(dst, made.data, force)
    took = "" if seconds is None else f", {seconds:.2f} s"
    return {
        "input": str(src),
        "output": str(dst),
        "width": made.width,
        "height": made.height,
        "seconds": seconds,
        "line": f"{src} -> {dst}: {made.width}x{made.height} {made.mode}{took}",
    }


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(file, as_json) -> None:
    """Show the header of a .vqc file and what it keeps beside the image (profile, EXIF, XMP, alpha)."""
    from vqcodec.format import pack_chunk, unpack_file
    from vqcodec.metadata import chunk_summary
    from vqcodec.zoo import find_by_id, retired

    data = Path(file).read_bytes()
    parsed = unpack_file(data)
    header, payload = parsed.header, parsed.payload
    known = find_by_id(header.family, header.model_id)
    model = None
    if known is not None:
        model = f"{known.name} q{known.quality}" + ("" if known.model_id == header.model_id else " (its successor)")
    elif header.model_id.hex() in retired():
        model = f"retired after vqcodec {retired()[header.model_id.hex()]['version']}"
    fields = {
        "file": file,
        "bytes": len(data),
        "version": header.version,
        "family": header.family,
        "quality": header.quality,
        "model_id": header.model_id.hex(),
        "model": model,
        "width": header.width,
        "height": header.height,
        "mode": header.mode,
        "header_bytes": len(data) - len(payload) - sum(len(pack_chunk(c)) for c in parsed.chunks),
        "payload_bytes": len(payload),
        "chunk_bytes": sum(len(pack_chunk(c)) for c in parsed.chunks),
        "bpp": 8 * len(data) / header.pixel_count,
        **chunk_summary(parsed.chunks),
    }
    if as_json:
        click.echo(json.dumps(fields, indent=2))
    else:
        for k, v in fields.items():
            if isinstance(v, dict):
                v = ", ".join(f"{name} {value}" for name, value in v.items())
            click.echo(f"{k:>13}: {v if v is not None else 'not installed'}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(as_json) -> None:
    """List the shipped models with their measured rate-distortion numbers."""
    from vqcodec.zoo import shipped

    rows = [
        {
            "name": i.name,
            "family": i.family,
            "quality": i.quality,
            "id": i.model_id.hex(),
            "file": i.path.name,
            "core_hours_recorded": round(i.recorded_core_hours.hours, 3),
            "every_stage_recorded": i.recorded_core_hours.complete,
            "core_hours_estimated_in_part": i.estimated_core_hours,
            "gpu_hours_recorded": round(i.recorded_gpu_hours, 3),
            "levels_sharing_training": len(i.meta.get("training", {}).get("lambdas", [])) or 1,
            **i.metrics,
        }
        for i in shipped()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'name':<8}{'q':>3}  {'id':<9}{'kodak bpp':>10}{'PSNR dB':>9}{'MS-SSIM':>9}  training core-h")
    for r in rows:
        bpp, psnr, ms = r.get("kodak_bpp"), r.get("kodak_psnr"), r.get("kodak_ms_ssim")
        hours = f"{r['core_hours_recorded']:.2f}" + ("" if r["every_stage_recorded"] else " (+ earlier stages)")
        if r["core_hours_estimated_in_part"]:
            hours += " (in part estimated)"
        if r["gpu_hours_recorded"]:
            hours += f" + {r['gpu_hours_recorded']:.2f} GPU-h"
        if r["levels_sharing_training"] > 1:
            hours += f" (one run for {r['levels_sharing_training']} levels)"
        click.echo(
            f"{r['name']:<8}{r['quality']:>3}  {r['id']:<9}"
            f"{bpp if bpp is None else f'{bpp:.4f}':>10}{psnr if psnr is None else f'{psnr:.2f}':>9}"
            f"{ms if ms is None else f'{ms:.4f}':>9}  {hours}"
        )


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning errors into one line and exit status 1."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        cli.main(args=argv, prog_name="vqcodec", standalone_mode=False)
    except Failed:
        sys.exit(1)
    except click.exceptions.Abort:
        fail("aborted")
        sys.exit(130)
    except click.ClickException as e:
        fail(e.format_message())
        sys.exit(e.exit_code)
    except (VQCodecError, OSError) as e:
        if debug:
            traceback.print_exc()
        fail(str(e))
        sys.exit(1)
    except Exception as e:  # anything else is a bug: still one line unless --debug
        if debug:
            traceback.print_exc()
        fail(f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)")
        sys.exit(2)
    sys.exit(0)


@cli.command("eval")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--codecs", default="vq,jpeg,webp,avif,jpeg2000", show_default=True, help="Comma-separated codecs.")
@click.option("--out", default="reports/eval", show_default=True, help="Report directory.")
@click.option("--limit", type=int, default=None, help="Only the first N images.")
@click.option(
    "--workers",
    type=int,
    default=1,
    show_default=True,
    help="Processes of one thread each, measuring images side by side (learned codecs on a GPU: one).",
)
@click.option("--anchor", default="jpeg", show_default=True, help="Codec that BD numbers are measured against.")
@click.option("--anchors-dir", default=None, help="Published curves (CompressAI JSON) to draw dashed.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda, for the learned codecs.")
@click.option(
    "--measurements",
    type=click.Path(dir_okay=False),
    default=None,
    help="A JSON-lines file that keeps each measurement as it is made and reuses those already in it "
    "(same image, codec, setting and weights id): an interrupted evaluation resumes.",
)
def eval_cmd(dataset, codecs, out, limit, workers, anchor, anchors_dir, device, measurements) -> None:
    """Rate-distortion evaluation: report.json, report.md, report.html with plots and crops.

    A learned codec written NAME+refine (or NAME+refineN) is the model's levels encoded with
    encoder-side refinement (40 or N steps), measured as a codec of its own.
    Needs the evaluation extras: pip install "vqcodec[eval]"."""
    require_extras("eval")
    from vqcodec.report import run_eval

    try:
        report = run_eval(dataset, codecs.split(","), out, limit, workers, anchor, anchors_dir, device, measurements)
    except ValueError as e:
        raise VQCodecError(str(e)) from e
    click.echo(Path(out, "report.md").read_text())
    click.echo(f"wrote {out}/report.json, report.md, report.html ({len(report['measurements'])} measurements)")


@cli.command()
@click.argument("photo")
@click.option("--codecs", default="vq,webp,avif,jpeg", show_default=True, help="vq and classical codecs to show.")
@click.option("-q", "--quality", type=int, help="Quality level of the vq model (default: the model's default).")
@click.option("--target-bpp", type=float, help="Instead of -q: the highest vq level at or under this many bpp.")
@click.option("--model", default=None, help="Model name (vq, ae, vae), or a .safetensors weights file.")
@click.option("--out", default="compare", show_default=True, help="Directory of the page (created).")
@click.option("--force", is_flag=True, help="Overwrite an existing page.")
def compare(photo, codecs, quality, target_bpp, model, out, force) -> None:
    """One self-contained HTML page comparing vqcodec with classical codecs at equal file size.

    Each classical codec gets the largest quality whose file is at most the vq file's bytes.
    The page has a draggable split between any two images, zoom 1x/2x/4x with panning, and
    each file's bytes, bpp, PSNR and MS-SSIM. Needs pytorch-msssim (the evaluation extras)."""
    require_extras("compare", ("pytorch_msssim",))
    from vqcodec.images import prepare
    from vqcodec.viewer import compare as compare_codecs
    from vqcodec.viewer import page

    if target_bpp is not None and quality is not None:
        raise VQCodecError("give -q/--quality or --target-bpp, not both")
    rgb = prepare(photo).rgb
    try:
        variants = compare_codecs(rgb, codecs.split(","), quality, target_bpp, model)
    except ValueError as e:
        raise VQCodecError(str(e)) from e
    name = Path(photo).stem
    budget = variants[1].bytes
    title = f"{name}: {variants[1].label} against classical codecs at {budget:,} bytes or less"
    note = (
        f"{rgb.width}x{rgb.height}; rate = 8 x whole-file bytes / pixels; PSNR and MS-SSIM on the full RGB image; "
        "each classical codec at the largest quality whose file is at most vqcodec's."
    )
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / f"{name}.html"
    write_atomic(dst, page(variants, title, note).encode(), force)
    for v in variants[1:]:
        click.echo(f"{v.label}: {v.bytes} bytes, {v.bpp:.4f} bpp, {v.psnr:.2f} dB, MS-SSIM {v.ms_ssim:.4f}")
    click.echo(f"wrote {dst}")


EVAL_EXTRAS = {"matplotlib": "matplotlib", "pytorch_msssim": "pytorch-msssim", "bjontegaard": "bjontegaard"}


def require_extras(command: str, modules: tuple[str, ...] = tuple(EVAL_EXTRAS)) -> None:
    """One clear line, naming ``command``, when the evaluation extras it imports (about 185 MB
    with scipy and matplotlib, so not in the default install) are missing."""
    import importlib.util

    missing = [EVAL_EXTRAS[m] for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise VQCodecError(
            f"vqcodec {command} needs {', '.join(missing)}: install the evaluation extras with "
            '`python3 -m pip install "vqcodec[eval]"` (or `python3 -m pip install ".[eval]"` in a checkout)'
        )


TRAIN_OPTIONS: dict[str, dict] = {  # the TrainConfig fields the command line sets, and how
    "out": {"required": True, "help": "Run directory (checkpoints, metrics.jsonl); resumes if present."},
    "steps": {"help": "Training steps (the schedule's length)."},
    "batch": {"help": "Images per step."},
    "crop": {"help": "Crop size (pixels; index cells for the prior)."},
    "lr": {"help": "Peak learning rate (warm-up, then a cosine decay)."},
    "seed": {},
    "data": {"help": "Folder of training images (required unless the config's [train] table sets data)."},
    "val": {"help": "Folder of validation images (required unless the config's [train] table sets val)."},
    "scales": {
        "flag": "--scale",
        "multiple": True,
        "type": float,
        "help": "Factors the training images are downscaled by, one copy each (1: as they are, e.g. a pack "
        "that bin/gpu_pack.py downscaled already).",
    },
    "threads": {"help": "CPU threads (0: torch's default)."},
    "minutes": {
        "type": float,
        "help": "Stop with a checkpoint after this many minutes (0: no limit); running again resumes.",
    },
    "timed": {
        "is_flag": True,
        "help": "Run the schedule (learning rate, the prior's integer phase) over --minutes instead of "
        "--steps: for a burst of known length on a machine of unknown speed.",
    },
    "device": {
        "type": click.Choice(["auto", "cpu", "cuda"]),
        "help": "auto: a CUDA GPU when there is one (under torchrun: the local rank's).",
    },
    "amp": {
        "flag": "--amp/--no-amp",
        "help": "bfloat16 autocast and channels-last for the transforms (quantizer, densities and losses "
        "stay float32); default: on where the device computes bfloat16 natively (AVX512-BF16, AMX, GPUs).",
    },
}
REQUIRED_FOLDERS = ("data", "val")  # no default a user has: from the command line or the config


def train_option(name: str, spec: dict, default) -> Callable:
    """One click option for TrainConfig field ``name``, with the field's default."""
    spec = dict(spec)
    flag = spec.pop("flag", "--" + name.replace("_", "-"))
    if spec.pop("required", False):
        return click.option(flag, name, required=True, **spec)
    if name in REQUIRED_FOLDERS:
        return click.option(flag, name, default=None, **spec)
    if default is not None and "type" not in spec and not spec.get("is_flag"):
        spec["type"] = type(default[0] if isinstance(default, tuple) else default)
    return click.option(flag, name, default=default, show_default=default is not None, **spec)


def train_options(f):
    """Options shared by the training stages, built from TrainConfig's fields (one default each)."""
    from dataclasses import fields

    from vqcodec.train_config import TrainConfig

    defaults = {field.name: field.default for field in fields(TrainConfig)}
    options = [train_option(name, spec, defaults[name]) for name, spec in TRAIN_OPTIONS.items()]
    options.append(
        click.option(
            "--config",
            "config_file",
            type=click.Path(exists=True, dir_okay=False),
            help="TOML file with [model] and [train] tables; command-line options override [train].",
        )
    )
    for opt in reversed(options):
        f = opt(f)
    return f


def stage_configs(config_file: str | None, model_cls, options: dict, ctx: click.Context):
    """Model and training configuration from a TOML file and the command line."""
    import tomllib

    from vqcodec.train_config import TrainConfig

    table = tomllib.loads(Path(config_file).read_text()) if config_file else {}
    train = dict(table.get("train", {}))
    for key, value in options.items():
        source = ctx.get_parameter_source(key)
        if key in REQUIRED_FOLDERS and value is None:
            continue
        if source is not None and (source.name == "COMMANDLINE" or key not in train):
            train[key] = value
    for key in REQUIRED_FOLDERS:
        if key not in train:
            raise click.UsageError(f"give --{key} FOLDER (or set {key} in the config's [train] table)")
        if not Path(train[key]).is_dir():
            raise VQCodecError(f"--{key}: {train[key]} is not a folder")
    return model_cls(**table.get("model", {})), TrainConfig(**train)


@cli.group()
def train() -> None:
    """Train a VQ-VAE, then its PixelCNN prior, then export a weights file."""


@train.command("vqvae")
@click.option(
    "--init",
    "init_from",
    default=None,
    help="Start from this VQ-VAE (run directory or weights file) where the shapes agree (another level).",
)
@train_options
@click.pass_context
def train_vqvae_cmd(ctx, init_from, config_file, **options) -> None:
    """Stage 1: train the VQ-VAE (MSE + commitment, EMA codebook with dead-code restart)."""
    from vqcodec.models.vqvae import VQVAEConfig
    from vqcodec.train import train_vqvae

    model_cfg, cfg = stage_configs(config_file, VQVAEConfig, options, ctx)
    train_vqvae(model_cfg, cfg, init_from)


@train.command("decoder")
@click.option("--vqvae", "vqvae_src", required=True, help="The trained VQ-VAE: a run directory or a VQ weights file.")
@click.option(
    "--grow",
    type=int,
    default=0,
    show_default=True,
    help="Residual blocks to add to the decoder first (each starts as the identity).",
)
@click.option(
    "--int8",
    "for_int8",
    is_flag=True,
    help="Train the decoder for int8 inference (quantization-aware; its activation ranges ship with the weights).",
)
@click.option(
    "--int8-float-convs",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="With --int8: the decoder's last convolutions that stay float (2: the full-resolution one too).",
)
@click.option(
    "--int8-equalize",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="With --int8: first bring each activation's channels toward one range, with this exponent (0: not).",
)
@train_options
@click.pass_context
def train_decoder_cmd(ctx, vqvae_src, grow, for_int8, int8_float_convs, int8_equalize, config_file, **options) -> None:
    """Optional stage: more decoder-only steps (encoder and codebook frozen, so indices do not change)."""
    from vqcodec.models.vqvae import VQVAEConfig, grow_decoder
    from vqcodec.runs import load_vqvae
    from vqcodec.train import finetune_decoder

    _, cfg = stage_configs(config_file, VQVAEConfig, options, ctx)
    vqvae = load_vqvae(vqvae_src)
    int8 = int8_float_convs if for_int8 else 0
    model = grow_decoder(vqvae, grow) if grow else vqvae
    finetune_decoder(model, cfg, vqvae_src, int8_float_convs=int8, equalize=int8_equalize if for_int8 else 0.0)


@train.command("prior")
@click.option("--vqvae", "vqvae_dir", required=True, help="The trained VQ-VAE: a run directory or a VQ weights file.")
@click.option(
    "--init",
    "init_from",
    default=None,
    help="Start from this prior of the same indices (run directory or VQ weights file), e.g. a flat "
    "prior for one with groups, or the weights a --vqvae run was continued from.",
)
@train_options
@click.pass_context
def train_prior_cmd(ctx, vqvae_dir, init_from, config_file, **options) -> None:
    """Stage 2: train the PixelCNN prior on the VQ-VAE's index grids (float, then integer-aware)."""
    from vqcodec.models.prior import PriorConfig
    from vqcodec.runs import load_vqvae
    from vqcodec.train import train_prior

    model_cfg, cfg = stage_configs(config_file, PriorConfig, options, ctx)
    train_prior(load_vqvae(vqvae_dir), model_cfg, cfg, init=init_from, vqvae_source=vqvae_dir)


def baseline_command(family: str, hyper_default: int) -> None:
    """Register ``vqcodec train ae`` or ``vqcodec train vae``."""

    @train.command(family)
    @click.option("--init", "init_dir", default=None, help="Start from this run's weights (another lambda).")
    @train_options
    @click.pass_context
    def command(ctx, init_dir, config_file, **options) -> None:
        from vqcodec.models.ae import AEConfig
        from vqcodec.train import train_baseline

        model_cfg, cfg = stage_configs(config_file, AEConfig, options, ctx)
        if model_cfg.family != family:
            model_cfg.hyper = hyper_default
        train_baseline(model_cfg, cfg, init_dir)

    command.__doc__ = {
        "ae": "Baseline: train a factorized-prior autoencoder (Balle et al. 2017) at the config's lambda(s).",
        "vae": "Baseline: train a scale-hyperprior VAE (Balle et al. 2018) at the config's lambda(s).",
    }[family]


baseline_command("ae", 0)
baseline_command("vae", 64)


@train.command("hvq")
@click.option(
    "--init",
    "init_from",
    default=None,
    help="Start from this variable-rate VAE (a run directory or its pack, e.g. checkpoints/vae.pt) of the same shape.",
)
@train_options
@click.pass_context
def train_hvq_cmd(ctx, init_from, config_file, **options) -> None:
    """Train the variable-rate hyper-VQ model (hyperprior transform, hexagonal-lattice VQ, per-rate gains)."""
    from vqcodec.models.hypervq import HyperVQConfig
    from vqcodec.train import train_baseline

    model_cfg, cfg = stage_configs(config_file, HyperVQConfig, options, ctx)
    train_baseline(model_cfg, cfg, init_from)


@train.command("export")
@click.option("--vqvae", "vqvae_dir", help="VQ codec: the trained VQ-VAE (run directory or weights file).")
@click.option(
    "--prior", "prior_dir", help="VQ codec: the trained prior (run directory, or a weights file of the same indices)."
)
@click.option("--run", "run_dir", help="AE or VAE codec: run directory of the trained model.")
@click.option("--name", default=None, help="Model name (default: the family, vq, ae or vae).")
@click.option("--quality", type=int, required=True)
@click.option("--out", required=True, help="Weights file to write (.safetensors).")
@click.option(
    "--kodak",
    default=None,
    help="Folder of images to measure the shipped numbers on (their names take the folder's: kodak_bpp for "
    "a folder called kodak); without it the weights carry no measurements.",
)
@click.option("--default", "is_default", is_flag=True, help="Mark this level as the model's default.")
@click.option(
    "--level",
    type=int,
    default=0,
    show_default=True,
    help="AE or VAE codec: the level of a variable-rate run (from 0).",
)
@click.option(
    "--measurements",
    type=click.Path(dir_okay=False),
    help="Append the Kodak measurements (per image) to this JSON-lines log, which `vqcodec eval "
    "--measurements` reuses (e.g. docs/kodak-measurements.jsonl).",
)
def train_export_cmd(vqvae_dir, prior_dir, run_dir, name, quality, out, kodak, is_default, level, measurements) -> None:
    """Last stage: write the weights file, measure it on Kodak, and store the numbers in its metadata."""
    from vqcodec.export import export_baseline, export_codec

    if run_dir and not (vqvae_dir or prior_dir):
        family = name or load_family(run_dir)
        info = export_baseline(run_dir, family, quality, out, kodak, is_default, level, measurements)
    elif vqvae_dir and prior_dir and not run_dir:
        info = export_codec(vqvae_dir, prior_dir, name or "vq", quality, out, kodak, is_default, measurements)
    else:
        raise click.UsageError("give --vqvae and --prior (VQ codec) or --run (AE or VAE codec)")
    click.echo(f"{out}: id {info.model_id.hex()}, {json.dumps(info.metrics)}")


def load_family(run_dir: str) -> str:
    """The family (ae or vae) of a baseline training run."""
    from vqcodec.models.ae import AEConfig
    from vqcodec.runs import load_run

    return AEConfig(**load_run(run_dir)[0]["model"]).family
