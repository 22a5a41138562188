"""Training records: stages add up, repeats get their own names, and prior stages split off."""

from __future__ import annotations

import dataclasses

from vqcodec.runs import add_stage, same_architecture, split_stages, stage_names

from .conftest import TINY_VQVAE


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
