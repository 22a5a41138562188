import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from vqcodec.codec import BaselineCodec, VQCodec
from vqcodec.data import shard_items
from vqcodec.export import export_baseline, export_codec
from vqcodec.format import unpack
from vqcodec.models.ae import AEConfig
from vqcodec.models.prior import PixelCNNPrior, PriorConfig, float_state
from vqcodec.models.vqvae import VQVAE, grow_decoder
from vqcodec.quantization import grouped_order
from vqcodec.runs import load_prior, load_run, load_vqvae
from vqcodec.tensors import load_tensors, prefixed
from vqcodec.train import (
    Run,
    TrainConfig,
    cosine_lr,
    finetune_decoder,
    train_baseline,
    train_prior,
    train_vqvae,
    warm_start,
    warm_start_prior,
    warmup_ema,
)
from vqcodec.zoo import read_info

from .conftest import TINY_GROUPED_PRIOR, TINY_PRIOR, TINY_VQVAE, save_tiny_vq, smooth_image, train_config


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cosine_schedule():
    assert cosine_lr(0, 1000, 1.0, warmup=10) == pytest.approx(0.1)
    assert cosine_lr(10, 1000, 1.0, warmup=10) == pytest.approx(1.0)
    assert cosine_lr(1000, 1000, 1.0, warmup=10) == pytest.approx(0.05)
    assert cosine_lr(10, 1000, 1.0, warmup=10, done=1.0) == pytest.approx(0.05)  # a timed run's end
    assert cosine_lr(999, 1000, 1.0, warmup=10, done=0.5) == pytest.approx(0.525)


def test_a_timed_run_schedules_over_its_minutes_not_its_steps(tmp_path):
    model = torch.nn.Linear(4, 1)
    cfg = TrainConfig(out=str(tmp_path), steps=10**6, ema=0, amp=False, device="cpu", minutes=2, timed=True)
    run = Run(cfg, model, {}, "t")
    run.step, run.started = 300, run.started - 60  # past the warm-up, one of two minutes behind
    assert run.done() == pytest.approx(0.5, abs=0.01)
    run.optimize(model(torch.randn(2, 4)).square().mean())
    assert run.opt.param_groups[0]["lr"] == pytest.approx(cfg.lr * 0.525, rel=0.02)
    cfg.timed = False
    assert run.done() == pytest.approx(301 / 10**6)


def test_vqvae_then_prior_then_export(folders, tmp_path):
    vq_dir, prior_dir = tmp_path / "vq", tmp_path / "prior"
    train_vqvae(TINY_VQVAE, train_config(folders, vq_dir, 2))
    assert (vq_dir / "checkpoint.pt").exists() and (vq_dir / "config.json").exists()
    assert any("val_psnr" in m for m in lines(vq_dir / "metrics.jsonl"))

    # resuming with a larger budget continues from the checkpoint, not from scratch
    before = load_vqvae(vq_dir).state_dict()
    train_vqvae(TINY_VQVAE, train_config(folders, vq_dir, 4))
    assert torch.load(vq_dir / "checkpoint.pt", weights_only=False)["step"] == 4
    assert any(not torch.equal(v, load_vqvae(vq_dir).state_dict()[k]) for k, v in before.items())

    prior_cfg = PriorConfig(codebook_size=TINY_VQVAE.codebook_size, radius=1, hidden=8, layers=1)
    prior_train = train_config(folders, prior_dir, 4)
    prior_train.crop = 8  # index cells
    train_prior(load_vqvae(vq_dir), prior_cfg, prior_train, qat_fraction=0.5)
    logged = lines(prior_dir / "metrics.jsonl")
    assert any(m.get("quantized") for m in logged) and load_prior(prior_dir).quantized

    out = tmp_path / "tiny-q7.safetensors"
    info = export_codec(str(vq_dir), str(prior_dir), "tiny", 7, str(out), str(folders / "val"))
    assert read_info(out) == info and info.quality == 7
    assert {"val_bpp", "val_psnr", "val_codebook_perplexity"} <= set(info.metrics)  # named after the folder
    codec = VQCodec.from_weights(info)
    img = smooth_image(20, 20)
    assert codec.decompress(codec.compress(img)).size == (20, 20)


def test_a_prior_with_groups_trains_and_exports_a_codec_that_writes_version_3(folders, tmp_path):
    train_vqvae(TINY_VQVAE, train_config(folders, tmp_path / "vq", 2))
    prior_cfg = PriorConfig(codebook_size=TINY_VQVAE.codebook_size, radius=1, hidden=8, layers=1, groups=4)
    prior_train = train_config(folders, tmp_path / "prior", 2)
    prior_train.crop = 8
    train_prior(load_vqvae(tmp_path / "vq"), prior_cfg, prior_train, qat_fraction=0.5)
    info = export_codec(str(tmp_path / "vq"), str(tmp_path / "prior"), "tiny", 2, str(tmp_path / "g.st"), None)
    assert info.meta["prior_config"]["groups"] == 4
    codec = VQCodec.from_weights(info)
    data = codec.compress(smooth_image(24, 24))
    assert unpack(data)[0].version == 3 and codec.decompress(data).size == (24, 24)


def test_a_prior_with_groups_starts_from_a_flat_one_at_its_member_distributions(tiny_weights):
    vqvae = load_vqvae(tiny_weights)
    flat = PixelCNNPrior(TINY_PRIOR)
    flat.load_state_dict(float_state(TINY_PRIOR, prefixed(load_tensors(read_info(tiny_weights)), "prior.")))
    grouped = PixelCNNPrior(TINY_GROUPED_PRIOR)
    grouped.set_code_order(grouped_order(vqvae.quantizer.codebook.detach(), 4))
    origin = warm_start_prior(grouped, vqvae, tiny_weights)
    assert origin["weights"] == "tiny-q1" and "training" in origin
    idx = torch.randint(0, 16, (1, 5, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        log_p, logits = grouped(idx), flat(idx)
    for group in grouped.order.view(4, 4):  # within a group, the log-odds of two codes are the flat prior's
        assert torch.allclose(
            log_p[..., group] - log_p[..., group[:1]], logits[..., group] - logits[..., group[:1]], atol=1e-4
        )


def test_a_prior_starts_only_from_one_of_the_same_indices(tiny_weights, tmp_path):
    other = load_vqvae(tiny_weights)
    with torch.no_grad():
        other.quantizer.codebook.add_(1.0)
    with pytest.raises(ValueError, match="another codebook"):
        warm_start_prior(PixelCNNPrior(TINY_PRIOR), other, tiny_weights)
    with pytest.raises(ValueError, match="another shape"):
        warm_start_prior(
            PixelCNNPrior(dataclasses.replace(TINY_PRIOR, hidden=8)), load_vqvae(tiny_weights), tiny_weights
        )


def test_a_continued_vqvae_keeps_its_codes_so_its_origins_prior_starts_the_new_one(folders, tiny_weights, tmp_path):
    run = tmp_path / "continued"
    train_vqvae(TINY_VQVAE, train_config(folders, run, 2), init=tiny_weights)
    continued = load_vqvae(run)
    assert not torch.equal(continued.quantizer.codebook, load_vqvae(tiny_weights).quantizer.codebook)
    with pytest.raises(ValueError, match="another codebook"):
        warm_start_prior(PixelCNNPrior(TINY_PRIOR), continued, tiny_weights)
    origin = warm_start_prior(PixelCNNPrior(TINY_PRIOR), continued, tiny_weights, vqvae_source=str(run))
    assert origin["weights"] == "tiny-q1"
    exported = tmp_path / "tiny-q1-continued.safetensors"  # as a GPU burst brings it home, with the old prior
    export_codec(str(run), tiny_weights, "tiny", 1, str(exported), None)
    warm_start_prior(PixelCNNPrior(TINY_PRIOR), load_vqvae(exported), tiny_weights, vqvae_source=str(exported))
    fresh = tmp_path / "fresh"  # a run that did not start from those weights has codes of its own
    train_vqvae(TINY_VQVAE, train_config(folders, fresh, 1))
    with pytest.raises(ValueError, match="another codebook"):
        warm_start_prior(PixelCNNPrior(TINY_PRIOR), load_vqvae(fresh), tiny_weights, vqvae_source=str(fresh))


def test_a_prior_with_groups_keeps_the_grouping_it_starts_from(tmp_path):
    """A continued VQ-VAE's drifted codebook may group its codes otherwise; the new prior keeps the
    old grouping and head, so it starts where the old prior was."""
    source = save_tiny_vq(tmp_path / "tiny-q1.safetensors", prior_cfg=TINY_GROUPED_PRIOR)
    old = PixelCNNPrior(TINY_GROUPED_PRIOR)
    old.load_state_dict(float_state(TINY_GROUPED_PRIOR, prefixed(load_tensors(read_info(source)), "prior.")))
    new = PixelCNNPrior(TINY_GROUPED_PRIOR)
    new.set_code_order(old.order.flip(0))  # the grouping of the drifted codebook
    warm_start_prior(new, load_vqvae(source), source)
    assert torch.equal(new.order, old.order)
    idx = torch.randint(0, 16, (1, 5, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(new(idx), old(idx), atol=1e-5)


def test_a_warm_started_prior_trains_exports_and_keeps_the_record_of_its_start(folders, tmp_path, tiny_weights):
    first, second = train_config(folders, tmp_path / "first", 2), train_config(folders, tmp_path / "second", 2)
    first.crop = second.crop = 8
    vqvae = load_vqvae(tiny_weights)
    train_prior(vqvae, TINY_PRIOR, first, qat_fraction=0.5)
    train_prior(vqvae, TINY_GROUPED_PRIOR, second, qat_fraction=0.5, init=str(tmp_path / "first"))
    assert load_run(tmp_path / "second")[0]["init"]["run"] == str(tmp_path / "first")
    info = export_codec(tiny_weights, str(tmp_path / "second"), "tiny", 1, str(tmp_path / "g.st"), None)
    assert list(info.meta["training"]["steps"])[-2:] == ["prior", "prior-2"]
    codec = VQCodec.from_weights(info)
    assert codec.decompress(codec.compress(smooth_image(24, 24))).size == (24, 24)


def test_a_resumed_prior_run_reads_its_index_grids_back(folders, tmp_path, tiny_weights, monkeypatch):
    import vqcodec.train as train

    cfg = train_config(folders, tmp_path / "prior", 2)
    cfg.crop = 8
    train_prior(load_vqvae(tiny_weights), TINY_GROUPED_PRIOR, cfg, qat_fraction=0.5)
    assert (tmp_path / "prior" / "grids-0.pt").exists()
    monkeypatch.setattr(train, "index_grids", lambda *a, **k: pytest.fail("encoded the photos again"))
    cfg.steps = 4
    train_prior(load_vqvae(tiny_weights), TINY_GROUPED_PRIOR, cfg, qat_fraction=0.5)
    other = load_vqvae(tiny_weights)  # another VQ-VAE's indices are not this run's data
    with torch.no_grad():
        other.quantizer.codebook.add_(1.0)
    with pytest.raises(pytest.fail.Exception, match="again"):
        train_prior(other, TINY_GROUPED_PRIOR, dataclasses.replace(cfg, steps=6), qat_fraction=0.5)


def test_a_new_level_starts_from_a_trained_one(folders, tmp_path):
    """Another factor and codebook size: shared layers copied, the codebook re-initialized."""
    train_vqvae(TINY_VQVAE, train_config(folders, tmp_path / "four", 2))
    source = load_vqvae(tmp_path / "four").state_dict()
    eight = dataclasses.replace(TINY_VQVAE, downsample=8, codebook_size=8)
    model = VQVAE(eight)
    origin = warm_start(model, str(tmp_path / "four"))
    assert origin["model"]["downsample"] == 4 and origin["run"] == str(tmp_path / "four")
    state = model.state_dict()
    assert torch.equal(state["encoder.0.weight"], source["encoder.0.weight"])
    assert torch.equal(state["decoder.7.weight"], source["decoder.7.weight"])
    assert not bool(state["quantizer.initialized"])  # k-means on the first batch, for 8 codes
    trained = train_vqvae(eight, train_config(folders, tmp_path / "eight", 2), init=str(tmp_path / "four"))
    assert trained.quantizer.codebook.shape == (8, TINY_VQVAE.latent_dim)
    assert load_run(tmp_path / "eight")[0]["init"]["run"] == str(tmp_path / "four")

    same = VQVAE(TINY_VQVAE)  # same codebook size: the trained codebook is kept
    warm_start(same, str(tmp_path / "four"))
    assert torch.equal(same.state_dict()["quantizer.codebook"], source["quantizer.codebook"])


def test_a_new_level_starts_from_a_shipped_weights_file(tiny_weights):

    model = VQVAE(TINY_VQVAE)
    origin = warm_start(model, tiny_weights)
    assert origin["weights"] == "tiny-q1" and origin["model"]["codebook_size"] == TINY_VQVAE.codebook_size
    shipped = prefixed(load_tensors(read_info(tiny_weights)), "vqvae.")
    assert all(torch.equal(v, shipped[k]) for k, v in model.state_dict().items())


def test_more_training_of_a_shipped_level_keeps_its_record(folders, tmp_path):
    """The same architecture from a weights file: its stages go on (vqvae, then vqvae-2); the
    re-trained prior replaces the old one's stage."""
    prior_cfg = PriorConfig(codebook_size=TINY_VQVAE.codebook_size, radius=1, hidden=8, layers=1)
    prior_train = train_config(folders, tmp_path / "prior", 2)
    prior_train.crop = 8
    train_vqvae(TINY_VQVAE, train_config(folders, tmp_path / "vq", 2))
    train_prior(load_vqvae(tmp_path / "vq"), prior_cfg, prior_train)
    first = export_codec(str(tmp_path / "vq"), str(tmp_path / "prior"), "tiny", 3, str(tmp_path / "a.st"), None)
    train_vqvae(TINY_VQVAE, train_config(folders, tmp_path / "more", 3), init=str(first.path))
    prior_train.out = str(tmp_path / "prior-2")
    train_prior(load_vqvae(tmp_path / "more"), prior_cfg, prior_train)
    second = export_codec(str(tmp_path / "more"), str(tmp_path / "prior-2"), "tiny", 3, str(tmp_path / "b.st"), None)
    training = second.meta["training"]
    assert training["steps"] == {"vqvae": 2, "vqvae-2": 3, "prior": 2}
    assert set(training["budget"]) == {"vqvae", "vqvae-2", "prior"} and second.meta["supersedes"] == []
    assert [c["id"] for c in training["continued"]] == [first.model_id.hex()]


def test_decoder_finetuning_keeps_the_indices(folders, tmp_path):
    vq_dir = tmp_path / "vq"
    trained = train_vqvae(TINY_VQVAE, train_config(folders, vq_dir, 2))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        before_idx, before_img = trained.encode(x), trained.decode(trained.encode(x))
    tuned = finetune_decoder(load_vqvae(vq_dir), train_config(folders, tmp_path / "dec", 3))
    with torch.no_grad():
        assert torch.equal(tuned.encode(x), before_idx)
        assert not torch.allclose(tuned.decode(before_idx), before_img)
    assert torch.equal(load_vqvae(tmp_path / "dec").quantizer.codebook, trained.quantizer.codebook)


@pytest.mark.parametrize("hyper", [0, 4])
def test_baseline_training_finetuning_and_export(folders, tmp_path, hyper):
    base_cfg = AEConfig(channels=8, latent=6, hyper=hyper, lmbda=0.01)
    train = train_config(folders, tmp_path / "base", 2)
    train.crop = 64
    train_baseline(base_cfg, train)
    assert any("val_bpp" in m for m in lines(tmp_path / "base" / "metrics.jsonl"))

    # a level at another lambda starts from the shared run's weights
    level_cfg = AEConfig(channels=8, latent=6, hyper=hyper, lmbda=0.05)
    train.out = str(tmp_path / "q2")
    base_state = load_run(tmp_path / "base")[1]
    tuned = train_baseline(level_cfg, train, init=str(tmp_path / "base"))
    assert load_run(tmp_path / "q2")[0]["init"]["model"]["lmbda"] == 0.01
    assert any(not torch.equal(v, tuned.state_dict()[k]) for k, v in base_state.items())

    out = tmp_path / f"{base_cfg.family}-q2.safetensors"
    info = export_baseline(str(tmp_path / "q2"), base_cfg.family, 2, str(out), str(folders / "val"))
    assert info.family == base_cfg.family and info.meta["ae_config"]["lmbda"] == 0.05
    assert info.meta["training"]["steps"] == {"base": 2, "finetune": 2}
    assert {"val_bpp", "val_psnr", "val_ms_ssim_db"} <= set(info.metrics)  # named after the folder
    codec = BaselineCodec.from_weights(info)
    assert codec.decompress(codec.compress(smooth_image(20, 30))).size == (30, 20)


@pytest.mark.parametrize("hyper", [0, 4])
def test_variable_rate_baseline_trains_every_level_and_exports_each(folders, tmp_path, hyper):
    model_cfg = AEConfig(channels=8, latent=6, hyper=hyper, lambdas=(0.004, 0.02))
    train = train_config(folders, tmp_path / "run", 4)
    train.crop = 64
    train_baseline(model_cfg, train)
    validated = [m for m in lines(tmp_path / "run" / "metrics.jsonl") if "val_bpp" in m]
    assert validated and all(len(m["val_bpp"]) == len(m["val_psnr"]) == 2 for m in validated)
    for level in range(2):
        out = tmp_path / f"q{level + 1}.safetensors"
        info = export_baseline(str(tmp_path / "run"), model_cfg.family, level + 1, str(out), None, level=level)
        assert info.meta["ae_config"]["lambdas"] == [model_cfg.lambdas[level]]
        assert info.meta["training"]["level"] == level and info.meta["training"]["budget"]["train"]["core_hours"] > 0
        codec = BaselineCodec.from_weights(info)
        assert codec.decompress(codec.compress(smooth_image(20, 30))).size == (30, 20)
    with pytest.raises(ValueError, match="levels"):
        export_baseline(str(tmp_path / "run"), model_cfg.family, 3, str(tmp_path / "x.safetensors"), None, level=2)


def test_runs_return_and_resume_the_moving_average_of_the_weights(folders, tmp_path):
    cfg = train_config(folders, tmp_path / "vq", 2)
    cfg.ema = 0.5
    final = train_vqvae(TINY_VQVAE, cfg)
    state = torch.load(tmp_path / "vq" / "checkpoint.pt", weights_only=False)
    assert state["averaged_steps"] == 2
    assert all(torch.equal(v, state["average"][k]) for k, v in final.state_dict().items())
    assert all(torch.equal(v, load_vqvae(tmp_path / "vq").state_dict()[k]) for k, v in final.state_dict().items())
    weights = [k for k in state["model"] if k.startswith("encoder.")]
    assert any(not torch.equal(state["model"][k], state["average"][k]) for k in weights)
    cfg.steps = 4
    train_vqvae(TINY_VQVAE, cfg)
    assert torch.load(tmp_path / "vq" / "checkpoint.pt", weights_only=False)["averaged_steps"] == 4


def test_a_checkpoint_without_optimizer_state_resumes_with_a_fresh_one(folders, tmp_path):
    """What bin/pack_run.py leaves: weights, step and budget, no Adam moments."""
    cfg = train_config(folders, tmp_path / "vq", 2)
    train_vqvae(TINY_VQVAE, cfg)
    path = tmp_path / "vq" / "checkpoint.pt"
    state = torch.load(path, weights_only=False)
    budget = state["budget"]["core_seconds"]
    torch.save({k: v for k, v in state.items() if k != "opt"}, path)
    cfg.steps = 3
    train_vqvae(TINY_VQVAE, cfg)
    resumed = torch.load(path, weights_only=False)
    assert resumed["step"] == 3 and resumed["budget"]["core_seconds"] > budget and "opt" in resumed


def test_shards_split_the_images_between_ranks():
    items = list(range(10))
    parts = [shard_items(items, rank, 2) for rank in range(2)]
    assert sorted(parts[0] + parts[1]) == items and len(parts[0]) == len(parts[1])
    assert shard_items(items, 0, 1) == items


def distributed_worker(rank: int, world: int, port: int, folders, out, family: str) -> None:
    """One rank of a 2-process CPU training run; saves its final weights for the test to compare."""
    import os

    os.environ.update(
        {"RANK": str(rank), "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    )
    torch.set_num_threads(1)
    cfg = train_config(folders, out / "run", 3)
    cfg.device = "cpu"
    if family == "vq":
        final = train_vqvae(TINY_VQVAE, cfg)
    else:
        cfg.crop = 64
        final = train_baseline(AEConfig(channels=8, latent=6, hyper=4), cfg)
    torch.save(final.state_dict(), out / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize("family", ["vq", "vae"])
def test_distributed_training_keeps_the_ranks_in_sync(folders, tmp_path, family):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(distributed_worker, args=(2, port, folders, tmp_path, family), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys()
    for name, value in ranks[0].items():
        assert torch.equal(value, ranks[1][name]), name  # parameters, codebook and averages all agree
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["world_size"] == 2
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["step"] == 3 and len(state["gen"]) == 2  # written once, with every rank's generator
    assert not torch.equal(state["gen"][0], state["gen"][1])


@pytest.mark.parametrize("family", ["vq", "vae"])
def test_mixed_precision_training_keeps_the_sensitive_parts_in_float32(folders, tmp_path, family):
    cfg = train_config(folders, tmp_path / "run", 2)
    cfg.amp, cfg.device = True, "cpu"  # bfloat16 autocast works on the CPU too
    if family == "vq":
        model = train_vqvae(TINY_VQVAE, cfg)
        assert model.quantizer.codebook.dtype == torch.float32
    else:
        cfg.crop = 64
        model = train_baseline(AEConfig(channels=8, latent=6, hyper=4), cfg)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y, rate = model.train()(torch.rand(1, 3, 64, 64))
        assert y.dtype == torch.float32 and rate.dtype == torch.float32
    logged = lines(tmp_path / "run" / "metrics.jsonl")
    assert all(math.isfinite(v) for m in logged for k, v in m.items() if k.startswith(("psnr", "val_")))
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("grow", [0, 1])
def test_decoder_of_a_weights_file_is_finetuned_and_its_files_still_decode(
    folders, tmp_path, tiny_weights, monkeypatch, grow
):
    """Fine-tuning a shipped level's decoder (grown by ``grow`` blocks) keeps its indices and
    prior, so the new weights supersede the old: files made by the old model decode with the new one."""
    from vqcodec import api, zoo

    old = read_info(tiny_weights)
    old_codec = VQCodec.from_weights(old)
    data = old_codec.compress(smooth_image(40, 48))
    vqvae = load_vqvae(tiny_weights)
    finetune_decoder(
        grow_decoder(vqvae, grow) if grow else vqvae, train_config(folders, tmp_path / "dec", 3), tiny_weights
    )
    new = export_codec(str(tmp_path / "dec"), tiny_weights, "tiny", 1, str(tmp_path / "new.safetensors"), None)
    assert new.meta["vqvae_config"]["decoder_blocks"] == grow

    training = new.meta["training"]
    assert training["steps"]["decoder"] == 3 and training["budget"]["decoder"]["core_hours"] > 0
    assert training["budget"]["decoder"]["precision"] in ("bfloat16", "float32")
    assert new.meta["supersedes"] == [{"id": old.model_id.hex(), "quality": 1, "release": "0.1.0"}]
    assert new.model_id != old.model_id and old.model_id in new.decodes

    monkeypatch.setattr(zoo, "shipped", lambda: (new,))
    api._load.cache_clear()  # the codecs loaded before the new weights were installed
    decoded = api.decompress(data)
    new_codec = VQCodec.from_weights(new)
    assert decoded.size == (48, 40)
    assert np.array_equal(
        np.asarray(decoded), new_codec.synthesize(new_codec.analyze(Image.fromarray(smooth_image(40, 48))), 40, 48)
    )
    assert unpack(new_codec.compress(smooth_image(40, 48)))[1] == unpack(data)[1]  # the same payload, a new id


@pytest.mark.parametrize("float_convs, equalize", [(1, 0.5), (2, 0.0)])
def test_a_decoder_trained_for_int8_resumes_exports_and_decodes_the_files_it_supersedes(
    folders, tmp_path, tiny_weights, monkeypatch, float_convs, equalize
):
    """Quantization-aware decoder training: its run resumes, its export folds the network back
    into the float layout with the activation ranges beside it, and the new codec decodes the
    old model's files in int8 where the CPU is fast at it, in float elsewhere; with its last
    convolution, or its last two, in float; equalized first, or not."""
    from vqcodec import codec as codec_module
    from vqcodec import int8

    old = read_info(tiny_weights)
    data = VQCodec.from_weights(old).compress(smooth_image(40, 48))
    for steps in (2, 4):
        cfg = train_config(folders, tmp_path / "dec", steps)
        finetune_decoder(load_vqvae(tiny_weights), cfg, tiny_weights, int8_float_convs=float_convs, equalize=equalize)
    config = json.loads((tmp_path / "dec" / "config.json").read_text())
    assert (config["int8"], config["int8_equalize"]) == (float_convs, equalize)
    assert [line["step"] for line in lines(tmp_path / "dec" / "metrics.jsonl") if "val_psnr" in line] == [0, 2, 4]
    new = export_codec(str(tmp_path / "dec"), tiny_weights, "tiny", 1, str(tmp_path / "new.safetensors"), None)
    assert new.meta["training"]["steps"]["decoder"] == 4 and old.model_id in new.decodes
    ranges = load_tensors(new)[int8.RANGES]
    assert ranges.ndim == 2 and ranges.shape[1] == 2 and torch.equal(load_vqvae(new.path).int8_ranges, ranges)

    pixels = {}
    for fast in (False, True):
        monkeypatch.setattr(codec_module, "int8_matmul_fast", lambda fast=fast: fast)
        codec = VQCodec.from_weights(new)
        assert (codec.int8_decoder is not None) == (fast and int8.available())
        if codec.int8_decoder is not None:
            assert int8.shipped_float_convs(codec.vqvae.decoder, ranges) == float_convs
        pixels[fast] = np.asarray(codec.decompress(data), dtype=np.float64)
    assert pixels[True].shape == (40, 48, 3)
    assert np.abs(pixels[True] - pixels[False]).mean() < 2  # the same decoder, in int8 or in float


def test_a_time_limit_stops_with_a_checkpoint_and_the_run_resumes(folders, tmp_path):
    cfg = train_config(folders, tmp_path / "vq", 1000)
    cfg.minutes, cfg.ckpt_every = 1e-9, 1000  # out of time at once: one checkpoint, no steps
    train_vqvae(TINY_VQVAE, cfg)
    assert torch.load(tmp_path / "vq" / "checkpoint.pt", weights_only=False)["step"] == 0
    cfg = train_config(folders, tmp_path / "vq", 3)
    train_vqvae(TINY_VQVAE, cfg)
    assert torch.load(tmp_path / "vq" / "checkpoint.pt", weights_only=False)["step"] == 3


def test_the_weight_average_of_a_short_run_follows_its_training():
    """A fixed 0.998 average of a 100-step run would still be 82% its starting point."""
    averaged, current = [torch.zeros(3)], [torch.ones(3)]
    update = warmup_ema(0.998)
    for n in range(1, 101):
        update(averaged, current, torch.tensor(n))
    assert float(averaged[0][0]) > 0.9
    late = [torch.zeros(1)]
    update(late, [torch.ones(1)], torch.tensor(10**6))
    assert float(late[0][0]) == pytest.approx(0.002)  # the decay reached


@pytest.mark.parametrize("clip", [0.0, 0.5])
def test_gradients_are_clipped_to_the_configured_norm(tmp_path, clip):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    run = Run(TrainConfig(out=str(tmp_path), steps=1, ema=0, amp=False, device="cpu", clip=clip), model, {}, "t")
    run.optimize(1000 * model(torch.randn(8, 4)).square().mean())
    norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])))
    assert norm <= 0.5 + 1e-5 if clip else norm > 10


def test_a_prior_crop_larger_than_every_grid_is_a_clear_error():
    from vqcodec.errors import VQCodecError
    from vqcodec.train import grid_batch

    grids = [torch.zeros(20, 30, dtype=torch.long), torch.zeros(40, 12, dtype=torch.long)]
    with pytest.raises(VQCodecError, match="at most 20"):
        grid_batch(grids, 2, 64, torch.Generator().manual_seed(0))
