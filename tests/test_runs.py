"""Training records: stages add up, repeats get their own names, prior stages split off, and packs carry runs."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from vqcodec.models.ae import AEConfig
from vqcodec.runs import CHECKPOINT, add_stage, pack_run, same_architecture, split_stages, stage_names, unpack_run
from vqcodec.train import train_baseline

from .conftest import TINY_VQVAE, train_config


def test_a_repeated_stage_gets_a_numbered_name_and_its_own_budget():
    record = add_stage({"data": "d"}, "prior", {"steps": 100}, {"steps": 80, "core_hours": 0.5})
    record = add_stage(record, "prior", {"steps": 50}, {"steps": 50, "core_hours": 0.2})
    assert record["steps"] == {"prior": 80, "prior-2": 50}  # what ran, not what was planned
    assert record["budget"]["prior-2"]["core_hours"] == 0.2 and record["prior"] == {"steps": 100}
    assert stage_names(record, "prior") == ["prior", "prior-2"] and stage_names(record, "vqvae") == []


def test_prior_stages_split_off_with_their_share_of_steps_and_budget():
    record = add_stage({"data": "d"}, "vqvae", {"steps": 10}, {"steps": 10})
    record = add_stage(add_stage(record, "prior", {"steps": 5}, {"steps": 5}), "prior", {"steps": 3}, {"steps": 3})
    rest, priors = split_stages(record, "prior")
    assert rest["steps"] == {"vqvae": 10} and "prior" not in rest and rest["data"] == "d"
    assert priors["steps"] == {"prior": 5, "prior-2": 3} and set(priors["budget"]) == {"prior", "prior-2"}


def test_the_rate_weight_is_not_part_of_the_architecture():
    other = dataclasses.replace(TINY_VQVAE, rate_weight=0.5)
    assert same_architecture(TINY_VQVAE.to_dict(), other.to_dict())
    assert not same_architecture(TINY_VQVAE.to_dict(), dataclasses.replace(TINY_VQVAE, codebook_size=32).to_dict())


def test_a_packed_baseline_run_resumes_with_more_rate_points(folders, tmp_path):
    cfg = train_config(folders, tmp_path / "run", 2)
    cfg.crop = 64
    train_baseline(AEConfig(channels=8, latent=6, hyper=4, lambdas=(0.002, 0.008)), cfg)
    summary = pack_run(tmp_path / "run", tmp_path / "pack.pt")
    assert summary.startswith(f"{tmp_path / 'pack.pt'}: step 2,")
    lambdas = (0.001, 0.002, 0.008)
    unpack_run(tmp_path / "pack.pt", tmp_path / "grown", lambdas)
    assert json.loads((tmp_path / "grown" / "config.json").read_text())["model"]["lambdas"] == list(lambdas)
    with pytest.raises(FileExistsError):
        unpack_run(tmp_path / "pack.pt", tmp_path / "grown")
    cfg.out, cfg.steps = str(tmp_path / "grown"), 5
    model = train_baseline(AEConfig(channels=8, latent=6, hyper=4, lambdas=lambdas), cfg)
    assert model.gains.gain.shape == (3, 6)
    state = torch.load(tmp_path / "grown" / CHECKPOINT, weights_only=False)
    assert state["step"] == 5 and "opt" in state
