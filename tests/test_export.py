"""Exported weights carry their training record, what they supersede, and 16-bit tensors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from vqcodec.data import image_files
from vqcodec.export import export_codec
from vqcodec.runs import load_vqvae
from vqcodec.tensors import load_tensors
from vqcodec.train import finetune_decoder, train_vqvae
from vqcodec.zoo import read_info

from .conftest import TINY_VQVAE, train_config


def test_an_exported_stage_records_the_steps_that_ran(folders, tmp_path, tiny_weights):
    cfg = train_config(folders, tmp_path / "vq", 1000)
    cfg.minutes, cfg.timed = 1e-9, True  # out of time at once: the plan was 1000 steps, none ran
    train_vqvae(TINY_VQVAE, cfg, init=tiny_weights)
    info = export_codec(str(tmp_path / "vq"), tiny_weights, "tiny", 1, str(tmp_path / "x.safetensors"), None)
    stage = next(k for k in info.meta["training"]["steps"] if k.startswith("vqvae"))
    assert info.meta["training"]["steps"][stage] == 0 == info.meta["training"]["budget"][stage]["steps"]
    assert "gpu_hours" not in info.meta["training"]["budget"][stage]  # a CPU run records core-hours alone


def test_a_retrained_codebook_supersedes_nothing(folders, tmp_path, tiny_weights):
    train_vqvae(TINY_VQVAE, train_config(folders, tmp_path / "vq", 2), init=tiny_weights)
    info = export_codec(str(tmp_path / "vq"), tiny_weights, "tiny", 1, str(tmp_path / "x.safetensors"), None)
    assert info.meta["supersedes"] == [] and info.decodes == {info.model_id}
    assert info.meta["training"]["continued"] == [{"weights": "tiny-q1", "id": read_info(tiny_weights).model_id.hex()}]
    assert info.meta["training"]["budget"]["vqvae"]["core_hours"] > 0


def test_a_level_exported_in_place_keeps_its_record_and_stores_float16(folders, tmp_path, tiny_weights):
    level = tmp_path / "tiny-q1.safetensors"
    shutil.copy(tiny_weights, level)
    old = read_info(level)
    finetune_decoder(load_vqvae(level), train_config(folders, tmp_path / "dec", 2), str(level))
    for _ in range(2):  # the second export reads the first one where the source was: same record
        info = export_codec(str(tmp_path / "dec"), str(level), "tiny", 1, str(tmp_path / "x.safetensors"), None)
        shutil.copy(tmp_path / "x.safetensors", level)
        assert list(info.meta["training"]["steps"]) == ["decoder"]
    assert info.meta["supersedes"][-1]["id"] == old.model_id.hex()
    dtypes = {v.dtype for k, v in load_tensors(info).items() if k.startswith("vqvae.") and "initialized" not in k}
    assert dtypes == {torch.float16}


def test_an_exports_measurements_go_to_the_log_the_report_reuses(folders, tmp_path, tiny_weights):
    kodak = shutil.copytree(folders / "val", tmp_path / "Kodak")  # the metrics take the folder's name
    log, out = tmp_path / "measurements.jsonl", str(tmp_path / "x.safetensors")
    info = export_codec(tiny_weights, tiny_weights, "tiny", 1, out, str(kodak), measurements=str(log))
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(rows) == len(image_files(folders / "val"))
    assert {(r["codec"], r["setting"], r["model"]) for r in rows} == {("tiny", "q1", info.model_id.hex())}
    assert info.metrics["kodak_bpp"] == pytest.approx(sum(r["bpp"] for r in rows) / len(rows))
    again = export_codec(tiny_weights, tiny_weights, "tiny", 1, out, str(kodak), measurements=str(log))
    assert len(log.read_text().splitlines()) == len(rows)  # reused, not measured again
    assert again.metrics["kodak_encode_s"] == info.metrics["kodak_encode_s"]
