"""The tensors of weights files: their checksum, loading and saving, and selection by name prefix.

Kept apart from ``vqcodec.zoo`` (which reads only the metadata of the shipped files) so that
listing models or reading a file's header never loads torch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vqcodec.errors import ModelError
from vqcodec.zoo import BUNDLE, SHARED, WeightsInfo, read_info, read_infos


def tensor_hash(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of the tensors, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors whose names start with ``prefix``, with it removed."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def save_weights(
    path: str | Path, tensors: dict[str, torch.Tensor], family: str, name: str, quality: int, meta: dict
) -> WeightsInfo:
    """Write tensors and metadata (JSON-encoded values) atomically as safetensors."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ModelError(f"{path}: the output directory {path.parent} does not exist")
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    header = {"family": family, "name": name, "quality": str(quality), "sha256": tensor_hash(tensors)}
    header.update({k: json.dumps(v) for k, v in meta.items()})
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=header)
    tmp.chmod(0o644)  # readable by everyone, like the other package files (save_file creates it private)
    tmp.replace(path)
    return read_info(path)


def load_tensors(info: WeightsInfo) -> dict[str, torch.Tensor]:
    """Load the tensors of a weights file (of a bundle's level: the shared ones and its own) and
    verify their SHA-256."""
    try:
        tensors = load_file(str(info.path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{info.path}: corrupt weights file ({e})") from e
    if info.member:
        tensors = {**prefixed(tensors, SHARED), **prefixed(tensors, info.member)}
    if tensor_hash(tensors) != info.sha256:
        raise ModelError(f"{info.path}: weights checksum mismatch, the file is corrupt")
    return tensors


def save_bundle(path: str | Path, infos: list[WeightsInfo]) -> list[WeightsInfo]:
    """Write the levels ``infos`` (one-level files of one model) as one bundle file, atomically:
    the tensors equal in every level once, each level's others under its prefix, and each
    level's id and metadata as they were (``zoo.read_infos``)."""
    path = Path(path)
    if len({(i.family, i.name) for i in infos}) != 1 or len({i.quality for i in infos}) != len(infos):
        raise ModelError("a bundle holds the distinct levels of one model")
    levels = [load_tensors(i) for i in infos]
    names = set.intersection(*(set(t) for t in levels))
    shared = {
        n for n in names if all(torch.equal(t[n], levels[0][n]) and t[n].dtype == levels[0][n].dtype for t in levels)
    }
    tensors = {SHARED + n: levels[0][n] for n in shared}
    for info, own in zip(infos, levels, strict=True):
        tensors.update({f"q{info.quality}/{n}": v for n, v in own.items() if n not in shared})
    entries = [{"quality": i.quality, "sha256": i.sha256, "meta": i.meta} for i in infos]
    header = {"family": infos[0].family, "name": infos[0].name, BUNDLE: json.dumps(entries)}
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=header)
    tmp.chmod(0o644)
    tmp.replace(path)
    return read_infos(path)
