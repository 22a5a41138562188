"""Bulk transcoding on a Ray cluster with Ray Data (``pip install "vqcodec[ray]"``).

``compress(ds)`` and ``decompress(ds)`` map a dataset of files to a dataset of results, one row
per input row, with stateful workers (a callable class in ``map_batches``): each loads its model
once and runs torch on one thread per CPU that Ray gives it. Every input goes through
``vqcodec.transcode``, as the command line's do, so the bytes are those of the plain CLI for the
same input and options. A bad input becomes a row with ``error`` set (the CLI's one-line
message), never a failed job; a worker that dies is restarted and its batch retried, so no row
is lost or doubled.

Reading: workers hold most of each CPU they run on (``WORKER_CPUS``), so the tasks that read the
files must ask for little, e.g. ``ray.data.read_binary_files(paths, include_paths=True,
ray_remote_args={"num_cpus": 0.1})``: with the default of one CPU per read task, a cluster
whose CPUs the workers hold never schedules a read. The command line (``vqcodec compress
--ray``) sends a dataset of paths instead, and its workers read the files themselves.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import ray
import ray.data
import torch

from vqcodec.codec import MAX_PIXELS
from vqcodec.errors import VQCodecError, failure_message
from vqcodec.transcode import Compressed, CompressOptions, Decompressed, compress_one, decompress_one

WORKER_CPUS = 0.9  # of a CPU, per worker: the rest is left for Ray's read tasks (see the module docstring)
BATCH = 4  # inputs per batch: small, so that a retried batch redoes little and the progress moves
RETRIES = 3  # restarts of a dead worker, and retries of its batch

COMPRESSED = pa.schema(
    [
        ("path", pa.string()),
        ("vqc", pa.binary()),
        ("bpp", pa.float64()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("model", pa.string()),
        ("error", pa.string()),
    ]
)
DECOMPRESSED = pa.schema(
    [
        ("path", pa.string()),
        ("image", pa.binary()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("mode", pa.string()),
        ("error", pa.string()),
    ]
)


def connect(address: str | None = None) -> None:
    """Join the cluster at ``address`` (default: RAY_ADDRESS), or start a local one; Ray's own
    progress bars and info lines off (the command line shows its own)."""
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def worker_threads() -> int:
    """Torch threads for a worker: one per CPU that Ray assigned it (at least one)."""
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    return max(1, round(cpus))


def inputs(batch: dict, column: str) -> list[tuple[str, bytes | str | None]]:
    """(name, bytes, path or None) of each row: the ``column`` of file bytes (None where it is
    null: an earlier step failed), or without that column the path to read."""
    paths = batch.get("path")
    data = batch.get(column)
    count = len(paths if paths is not None else data)
    names = [str(paths[n]) if paths is not None else f"row {n}" for n in range(count)]
    if data is None:
        return [(name, name) for name in names]
    return [(names[n], None if data[n] is None else bytes(data[n])) for n in range(count)]


def source_of(name: str, source: bytes | str | None) -> bytes | str:
    if source is None:
        raise VQCodecError(f"{name}: no file bytes in this row")
    return source


def table_of(rows: list[tuple], schema: pa.Schema) -> pa.Table:
    """A worker's result rows (tuples in the schema's column order) as a table."""
    return pa.table({name: [row[n] for row in rows] for n, name in enumerate(schema.names)}, schema=schema)


class Compressor:
    """A worker that compresses images: its model loaded once."""

    def __init__(self, options: CompressOptions, column: str):
        torch.set_num_threads(worker_threads())
        self.options, self.column = options, column
        self.codec = options.codec()

    def __call__(self, batch: dict) -> pa.Table:
        rows = []
        for name, source in inputs(batch, self.column):
            try:
                made = compress_one(source_of(name, source), name, self.options, self.codec)
                rows.append((name, made.vqc, made.bpp, made.width, made.height, made.model, None))
            except Exception as e:  # a bad input is a row, not a failed job
                rows.append((name, None, None, None, None, None, failure_message(name, e)))
        return table_of(rows, COMPRESSED)


class Decompressor:
    """A worker that decompresses .vqc files into image files of one format."""

    def __init__(self, fmt: str, column: str, model: str | None, max_pixels: int | None):
        torch.set_num_threads(worker_threads())
        self.fmt, self.column, self.model, self.max_pixels = fmt, column, model, max_pixels

    def __call__(self, batch: dict) -> pa.Table:
        rows = []
        formats = batch.get("format")
        for n, (name, source) in enumerate(inputs(batch, self.column)):
            fmt = str(formats[n]) if formats is not None else self.fmt
            try:
                source = source_of(name, source)
                data = source if isinstance(source, bytes) else Path(source).read_bytes()
                made = decompress_one(data, fmt, "cpu", self.model, self.max_pixels)
                rows.append((name, made.data, made.width, made.height, made.mode, None))
            except Exception as e:
                rows.append((name, None, None, None, None, failure_message(name, e)))
        return table_of(rows, DECOMPRESSED)


def workers() -> int:
    """One worker per CPU of the cluster."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def mapped(ds: ray.data.Dataset, worker: type, args: tuple, concurrency: int | None) -> ray.data.Dataset:
    return ds.map_batches(
        worker,
        fn_constructor_args=args,
        batch_size=BATCH,
        batch_format="numpy",
        concurrency=concurrency or workers(),
        num_cpus=WORKER_CPUS,
        max_restarts=RETRIES,
        max_task_retries=RETRIES,
    )


def compress(
    ds: ray.data.Dataset,
    *,
    model: str = "vq",
    quality: int | None = None,
    target_bpp: float | None = None,
    strip: bool = False,
    column: str = "bytes",
    concurrency: int | None = None,
) -> ray.data.Dataset:
    """A dataset of image files (a ``column`` of their bytes, and ``path`` if the rows have one;
    or only ``path``, which the workers read) -> one row per input: ``path``, ``vqc`` (the
    file's bytes, or null), ``bpp``, ``width``, ``height``, ``model`` and ``error`` (null, or
    the CLI's one-line message). ``concurrency``: workers (default: one per cluster CPU)."""
    options = CompressOptions(model, quality, target_bpp, strip=strip)
    return mapped(ds, Compressor, (options, column), concurrency)


def decompress(
    ds: ray.data.Dataset,
    *,
    format: str = "png",
    column: str = "vqc",
    model: str | None = None,
    concurrency: int | None = None,
) -> ray.data.Dataset:
    """A dataset of .vqc files (a ``column`` of their bytes, as ``compress`` makes) -> one row per
    input: ``path``, ``image`` (an image file of Pillow format ``format``, with its metadata),
    ``width``, ``height``, ``mode`` and ``error``."""
    from vqcodec.transcode import image_format

    return mapped(ds, Decompressor, (image_format("." + format.lower()), column, model, MAX_PIXELS), concurrency)


def stream(ds: ray.data.Dataset, ok: type) -> Iterator[tuple[str, object]]:
    """(path, result or VQCodecError) of each row of a mapped dataset, as rows arrive."""
    for row in ds.iter_rows():
        if row["error"] is not None:
            yield row["path"], VQCodecError(row["error"])
        elif ok is Compressed:
            yield row["path"], Compressed(row["vqc"], row["width"], row["height"], row["model"])
        else:
            yield row["path"], Decompressed(row["image"], row["width"], row["height"], row["mode"])


def compress_paths(
    paths: list[str], options: CompressOptions, concurrency: int | None = None
) -> Iterator[tuple[str, object]]:
    """The command line's --ray: the workers read and compress these files."""
    if not paths:
        return iter(())
    ds = ray.data.from_items([{"path": p} for p in paths])
    return stream(mapped(ds, Compressor, (options, "bytes"), concurrency), Compressed)


def decompress_paths(
    formats: dict[str, str], model: str | None, max_pixels: int | None, concurrency: int | None = None
) -> Iterator[tuple[str, object]]:
    """The command line's --ray: the workers read these .vqc files and write each in its format."""
    if not formats:
        return iter(())
    ds = ray.data.from_items([{"path": p, "format": f} for p, f in formats.items()])
    return stream(mapped(ds, Decompressor, ("PNG", "vqc", model, max_pixels), concurrency), Decompressed)
