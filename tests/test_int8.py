import copy
import dataclasses
import warnings

import pytest
import torch

from vqcodec import int8
from vqcodec.models.vqvae import VQVAE, grow_decoder, subpixel, transposed

from .conftest import TINY_VQVAE

needs_engine = pytest.mark.skipif(not int8.available(), reason="this torch has no x86 quantized engine")


def tiny_decoder(factor: int = 4, seed: int = 0) -> tuple[torch.nn.Sequential, torch.Tensor]:
    """A random tiny decoder and a batch of its inputs (codebook vectors of random indices)."""
    torch.manual_seed(seed)
    model = VQVAE(dataclasses.replace(TINY_VQVAE, downsample=factor)).eval()
    with torch.no_grad():
        model.quantizer.codebook.copy_(torch.randn(16, 4))
    return model.decoder, model.quantizer.lookup(torch.randint(16, (2, 6, 8)))


def calibrated(decoder: torch.nn.Sequential, codes: torch.Tensor, float_convs: int = 1) -> torch.fx.GraphModule:
    net = int8.prepare(decoder, codes, float_convs)
    with torch.no_grad():
        net(codes)
    return net


@pytest.mark.parametrize("factor", [2, 4, 8])
@pytest.mark.parametrize("float_convs", [1, 2])
def test_a_prepared_decoder_folds_back_to_its_float_weights(factor, float_convs):
    decoder, codes = tiny_decoder(factor)
    folded = int8.float_weights(int8.prepare(decoder, codes, float_convs), decoder)
    assert folded.keys() == decoder.state_dict().keys()
    assert all(torch.equal(folded[k], v) for k, v in decoder.state_dict().items())


@pytest.mark.parametrize("factor", [4, 8])
def test_training_keeps_the_sub_pixel_layers_transposed_convolutions(factor):
    """The taps a transposed convolution lacks stay zero and the four phases' biases equal, so
    the trained network folds back into the float decoder's layout exactly."""
    decoder, codes = tiny_decoder(factor)
    net = calibrated(decoder, codes)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        net(codes).square().mean().backward()
        opt.step()
    folded = int8.float_weights(net, decoder)
    ups = [name for name, layer in decoder.named_children() if isinstance(layer, torch.nn.ConvTranspose2d)]
    assert ups
    for name in ups:
        conv = net.get_submodule(f"{name}.0")
        back = subpixel(transposed(conv, decoder.get_submodule(name)))[0]
        assert torch.equal(back.weight, conv.weight) and torch.equal(back.bias, conv.bias)
        assert not torch.equal(folded[f"{name}.weight"], decoder.get_submodule(name).weight)


@needs_engine
@pytest.mark.parametrize("factor", [2, 4, 8])
@pytest.mark.parametrize("blocks, float_convs", [(0, 1), (1, 1), (0, 2), (1, 3)])
def test_the_int8_decoder_computes_what_pytorch_converts_the_trained_network_to(factor, blocks, float_convs):
    """The hand-built int8 network (no tracing at load) against PyTorch's FX conversion of the
    fake-quantized network it was trained as: the same quantized operations on the same
    numbers; and both close to the float decoder."""
    convert_fx = pytest.importorskip("torch.ao.quantization.quantize_fx").convert_fx

    decoder, codes = tiny_decoder(factor)
    if blocks:
        decoder = grow_decoder(VQVAE(dataclasses.replace(TINY_VQVAE, downsample=factor)), blocks).decoder
        with torch.no_grad():
            for p in decoder.parameters():
                p.add_(0.1 * torch.randn_like(p))
    net = calibrated(decoder, codes, float_convs)
    ranges = int8.ranges(net, decoder, float_convs)
    assert ranges.shape == (len(int8.points(decoder, float_convs)), 2) and bool((ranges[:, 0] < ranges[:, 1]).all())
    assert int8.shipped_float_convs(decoder, ranges) == float_convs
    fast = int8.int8_decoder(decoder, ranges)
    assert len(fast.last) > (float_convs > 1)  # the float layers: the last, or more
    assert (fast.rgb is not None) == (factor == 2 and float_convs == 1)  # the last alone, from 8 bits
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = convert_fx(copy.deepcopy(net).eval())(codes)
        exact, mine = decoder(codes), fast(codes)
    assert mine.shape == exact.shape
    assert torch.allclose(mine, reference, atol=1e-5)
    error = (mine - exact).square().mean() / exact.square().mean()
    assert 0 < float(error) < 1e-3  # int8, so not the same numbers, but close ones


@needs_engine
def test_ranges_that_do_not_fit_the_decoder_are_refused():
    decoder, codes = tiny_decoder()
    ranges = int8.ranges(calibrated(decoder, codes), decoder)
    with pytest.raises(ValueError, match="fit no int8 network"):
        int8.int8_decoder(decoder, torch.cat([ranges, ranges[:1]]))


def test_held_ranges_do_not_follow_the_data_and_are_released_after():
    decoder, codes = tiny_decoder()
    net = calibrated(decoder, codes)
    before = int8.ranges(net, decoder)
    with int8.ranges_held(net), torch.no_grad():
        net(codes * 10)
    assert torch.equal(int8.ranges(net, decoder), before)
    with torch.no_grad():
        net(codes * 10)
    assert not torch.equal(int8.ranges(net, decoder), before)
    int8.freeze_ranges(net)
    after = int8.ranges(net, decoder)
    with torch.no_grad():
        net(codes * 100)
    assert torch.equal(int8.ranges(net, decoder), after)


@pytest.mark.parametrize("factor", [2, 8])
def test_float_convs_count_the_convolutions_from_the_end(factor):
    decoder, _ = tiny_decoder(factor)
    convs = int8.convolutions(decoder)
    assert convs == int8.convolutions(int8.quantizable(decoder)) and convs[-1] == len(decoder) - 1
    assert all(isinstance(decoder[n], torch.nn.Conv2d | torch.nn.ConvTranspose2d) for n in convs)
    assert int8.float_start(decoder) == len(decoder) - 1
    assert int8.float_start(decoder, 2) == convs[-2] and isinstance(decoder[convs[-2]], torch.nn.Conv2d)
    assert len(int8.points(decoder, 2)) < len(int8.points(decoder))
    with pytest.raises(ValueError, match="float_convs must be"):
        int8.float_start(decoder, len(convs))


def grown_decoder(factor: int) -> tuple[torch.nn.Sequential, torch.Tensor]:
    """A tiny decoder with an extra residual block, every weight random."""
    _, codes = tiny_decoder(factor)
    decoder = grow_decoder(VQVAE(dataclasses.replace(TINY_VQVAE, downsample=factor)), 1).decoder
    with torch.no_grad():
        for p in decoder.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return decoder, codes


def channel_peaks(decoder: torch.nn.Sequential, codes: torch.Tensor) -> list[torch.Tensor]:
    """The per-channel peak magnitude of each activation between two convolutions."""
    outputs = {}
    observed = [m for _, modules, _ in int8._activations(decoder) for m in modules]

    def peak(module: torch.nn.Module, _, y: torch.Tensor) -> None:  # at once: a block's ReLU overwrites y
        outputs[module] = y.abs().amax((0, 2, 3))

    hooks = [m.register_forward_hook(peak) for m in observed]
    with torch.no_grad():
        decoder(codes)
    for hook in hooks:
        hook.remove()
    return [torch.stack([outputs[m] for m in modules]).amax(0) for _, modules, _ in int8._activations(decoder)]


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_equalizing_a_decoder_keeps_its_function_and_evens_its_channels(factor):
    decoder, codes = grown_decoder(factor)
    before = copy.deepcopy(decoder.state_dict())
    even = int8.equalize(decoder, codes, alpha=1.0)
    assert all(torch.equal(v, before[k]) for k, v in decoder.state_dict().items())  # a copy: the original stays
    with torch.no_grad():
        assert torch.allclose(even(codes), decoder(codes), atol=1e-5)
        assert torch.allclose(int8.equalize(decoder, codes, alpha=0.0)(codes), decoder(codes), atol=1e-6)
    # the residual stream, the blocks' inner activations and the upsampled ones: 3 + a factor-8 stage
    assert len(int8._activations(decoder)) == 4 + 1 + (factor == 8)
    for uneven, evened in zip(channel_peaks(decoder, codes), channel_peaks(even, codes), strict=True):
        assert float(uneven.min() / uneven.max()) < 0.9
        assert torch.allclose(evened, evened.max().expand_as(evened), rtol=1e-4)  # alpha 1: every channel alike


@needs_engine
def test_equalizing_quantizes_a_channel_of_small_range_finer():
    """One channel of the residual stream a hundred times smaller than the rest (the same function):
    the int8 network of the equalized decoder is closer to the float decoder."""
    decoder, codes = grown_decoder(4)
    with torch.no_grad():
        decoder[0].weight[0] *= 0.01
        decoder[0].bias[0] *= 0.01
        for block in (decoder.get_submodule("1"), decoder.extra0):
            block.conv1.weight[:, 0] *= 100
            block.conv2.weight[0] *= 0.01
            block.conv2.bias[0] *= 0.01
        decoder.get_submodule("3").weight[0] *= 100  # the transposed convolution's input channel 0
        exact = decoder(codes)

    def error(decoder: torch.nn.Sequential) -> float:
        fast = int8.int8_decoder(decoder, int8.ranges(calibrated(decoder, codes), decoder))
        with torch.no_grad():
            return float((fast(codes) - exact).square().mean())

    assert error(int8.equalize(decoder, codes)) < 0.5 * error(decoder)


def test_phase_convolutions_refuse_taps_a_transposed_convolution_lacks():
    decoder, _ = tiny_decoder(4)
    layer = subpixel(decoder.get_submodule("3"))
    assert len(int8.phase_convolutions(layer)) == 4
    with torch.no_grad():
        layer[0].weight[0, 0, 2, 2] = 1.0  # phase (0, 0) reads rows and columns -1 and 0 only
    with pytest.raises(ValueError, match="taps"):
        int8.phase_convolutions(layer)
