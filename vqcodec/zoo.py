"""The model zoo: weights shipped in the package, with their configuration and measured numbers.

Each ``vqcodec/weights/<name>-q<quality>.safetensors`` holds every tensor a codec needs and,
in its metadata (as torchvision's weights enums do), the architecture configuration, how it
was trained, its rate-distortion numbers on Kodak, and the SHA-256 of its tensors. Loading
recomputes that hash, so a corrupt file is refused; its first 4 bytes are the model id
written into every .vqc file, so a file decodes only with the model that made it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from safetensors import SafetensorError, safe_open

from vqcodec.errors import ModelError

WEIGHTS_DIR = Path(__file__).parent / "weights"
RETIRED_FILE = WEIGHTS_DIR / "retired.json"
DEFAULT_MODEL = "vq"


class CoreHours(NamedTuple):
    """Training compute of a model: CPU core-hours, whether every stage recorded them, whether
    some are estimates, and GPU-hours (kept apart)."""

    hours: float
    complete: bool
    estimated: bool = False
    gpu_hours: float = 0.0


@dataclass(frozen=True)
class WeightsInfo:
    """What a weights file says about itself, read from its metadata alone."""

    path: Path
    family: str
    name: str
    quality: int
    sha256: str
    meta: dict = field(default_factory=dict, compare=False)
    member: str = ""  # in a bundle (one file holding every level of a model): this level's prefix

    @property
    def model_id(self) -> bytes:
        return bytes.fromhex(self.sha256[:8])

    @property
    def metrics(self) -> dict:
        return self.meta.get("metrics", {})

    @property
    def recorded_core_hours(self) -> CoreHours:
        """Core-hours of the training stages that recorded them, and whether every stage did:
        runs record their budget since vqcodec 0.2; earlier stages only their steps."""
        training = self.meta.get("training", {})
        budgets = training.get("budget", {})
        hours = sum(b.get("core_hours", 0.0) for b in budgets.values())
        return CoreHours(hours, set(training.get("steps", {})) <= {k for k, b in budgets.items() if "core_hours" in b})

    @property
    def recorded_gpu_hours(self) -> float:
        """GPU-hours of the stages trained on a GPU (kept apart from CPU core-hours; a GPU
        shared by runs side by side counts in full for each)."""
        return sum(b.get("gpu_hours", 0.0) for b in self.meta.get("training", {}).get("budget", {}).values())

    @property
    def estimated_core_hours(self) -> bool:
        """Whether some stage's core-hours are an estimate (stages trained before budgets were
        recorded: steps x a measured time per step)."""
        return any("estimated" in b for b in self.meta.get("training", {}).get("budget", {}).values())

    @property
    def decodes(self) -> frozenset[bytes]:
        """Ids of the files this model decodes: its own, and those of the earlier weights it
        supersedes (same encoder, codebook and prior, so the same indices; a better decoder)."""
        earlier = {bytes.fromhex(entry["id"]) for entry in self.meta.get("supersedes", [])}
        return frozenset({self.model_id, *earlier})


BUNDLE = "levels"  # the metadata key of a bundle: one entry per level
SHARED = "shared/"  # a bundle's prefix of the tensors every level has the same


def read_infos(path: str | Path) -> list[WeightsInfo]:
    """Read a weights file's metadata (not its tensors): one level, or each level of a bundle.

    A bundle (``tensors.save_bundle``) holds a model's levels in one file: the tensors they all
    have the same once, under ``shared/``, and each level's others under ``q<N>/``. Each level
    is what its own file would be: the same tensors, so the same id, and its own metadata."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as f:  # only the metadata: no torch
            raw = f.metadata() or {}
        if BUNDLE in raw:
            return [
                WeightsInfo(
                    path,
                    raw["family"],
                    raw["name"],
                    int(level["quality"]),
                    level["sha256"],
                    level["meta"],
                    member=f"q{level['quality']}/",
                )
                for level in json.loads(raw[BUNDLE])
            ]
        meta = {k: json.loads(v) for k, v in raw.items() if k not in ("family", "name", "quality", "sha256")}
        return [WeightsInfo(path, raw["family"], raw["name"], int(raw["quality"]), raw["sha256"], meta)]
    except FileNotFoundError as e:
        raise ModelError(f"{path}: no such weights file") from e
    except (SafetensorError, KeyError, ValueError, TypeError, OSError) as e:
        raise ModelError(f"{path}: not a vqcodec weights file ({e})") from e


def read_info(path: str | Path) -> WeightsInfo:
    """Read a one-level weights file's metadata (a bundle's: give ``read_infos``)."""
    infos = read_infos(path)
    if len(infos) > 1:
        raise ModelError(f"{path}: a bundle of {len(infos)} levels (pick one with --quality)")
    return infos[0]


@lru_cache(maxsize=1)
def shipped() -> tuple[WeightsInfo, ...]:
    """Every weights file in the package, ordered by family, name and quality."""
    infos = [info for p in sorted(WEIGHTS_DIR.glob("*.safetensors")) for info in read_infos(p)]
    return tuple(sorted(infos, key=lambda i: (i.family, i.name, i.quality)))


def levels(name: str = DEFAULT_MODEL) -> list[WeightsInfo]:
    """Every quality level of the shipped model ``name`` in rising order (a weights file: its own)."""
    if is_path(name):
        return sorted(read_infos(name), key=lambda i: i.quality)
    found = [i for i in shipped() if i.name == name]
    if not found:
        known = ", ".join(sorted({i.name for i in shipped()})) or "none"
        raise ModelError(f"unknown model {name!r} (shipped: {known})")
    return found


def training_core_hours(name: str) -> CoreHours:
    """Core-hours that trained every level of model ``name`` (a run shared by several levels of
    a variable-rate model counted once), whether every stage recorded or estimated them,
    whether some are estimates, and the GPU-hours beside them."""
    hours, complete, estimated, gpu, runs = 0.0, True, False, 0.0, set()
    for info in levels(name):
        training = info.meta.get("training", {})
        run = json.dumps(training.get("budget"), sort_keys=True) if training.get("lambdas") else info.sha256
        if run not in runs:
            runs.add(run)
            recorded = info.recorded_core_hours
            hours += recorded.hours
            complete &= recorded.complete
            estimated |= info.estimated_core_hours
            gpu += info.recorded_gpu_hours
    return CoreHours(hours, complete, estimated, gpu)


def find(name: str = DEFAULT_MODEL, quality: int | None = None) -> WeightsInfo:
    """The shipped weights called ``name`` at ``quality`` (default: the model's default level),
    or a weights file when ``name`` is a path (a one-level file whatever ``quality``)."""
    found = levels(name)
    if len(found) == 1 and (quality is None or is_path(name)):
        return found[0]
    if quality is None:
        defaults = [i for i in found if i.meta.get("default")]
        return defaults[0] if defaults else found[len(found) // 2]
    for info in found:
        if info.quality == quality:
            return info
    raise ModelError(f"model {name!r} has no quality {quality} (has {', '.join(str(i.quality) for i in found)})")


def is_path(name: str) -> bool:
    return name.endswith(".safetensors") or Path(name).is_file()


def find_by_id(family: str, model_id: bytes) -> WeightsInfo | None:
    """The shipped weights that decode a .vqc file of this family and model id, if any.

    The id, a hash of the tensors, is what identifies a model; the header's quality number is
    the level the model had when the file was written (the first vq model, once level 1, is
    level 4 of the ladder now, and its files still decode). A model's own files come first,
    then those of the earlier weights it supersedes."""
    candidates = [i for i in shipped() if i.family == family]
    exact = [i for i in candidates if i.model_id == model_id]
    return next(iter(exact or [i for i in candidates if model_id in i.decodes]), None)


@lru_cache(maxsize=1)
def retired() -> dict[str, dict]:
    """Model ids that this release cannot decode: {id hex: {family, quality, version}}, where
    ``version`` is the last vqcodec release that shipped the model."""
    return json.loads(RETIRED_FILE.read_text())["retired"] if RETIRED_FILE.exists() else {}


def missing_model_error(family: str, quality: int, model_id: bytes) -> ModelError:
    """The error for a file whose model is not installed: a retired model names the release to install."""
    old = retired().get(model_id.hex())
    if old is not None:
        return ModelError(
            f"the file was made by {old['family']} q{old['quality']} (id {model_id.hex()}), a model retired after "
            f"vqcodec {old['version']}: decode it with `pip install vqcodec=={old['version']}`, "
            "or pass --model with that model's weights file"
        )
    return ModelError(
        f"unknown model: the file was made by {family} q{quality} (id {model_id.hex()}), which is not installed "
        "(pass --model with its weights file)"
    )
