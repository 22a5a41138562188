"""The VQ-VAE decoder as int8 convolutions, for CPUs with VNNI or AMX.

Every convolution but the last (to RGB) runs on 8-bit weights (one symmetric scale per output
channel) and 8-bit activations (0..255 with a scale and zero point per tensor), accumulated in
int32 by PyTorch's x86 quantized engine: about twice as fast as float32 where the CPU has VNNI.
Quantized after training, the decoder loses 0.03-0.09 dB; trained for it (quantization-aware
training: Jacob et al., "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", CVPR 2018), it loses about none. ``vqcodec train decoder
--int8`` trains the fake-quantized network of ``prepare``; the activation ranges it settles on
ship with the weights (the tensor ``RANGES``), so every machine builds the same int8 network
from the same numbers and none calibrates anything. Training starts from the decoder's
``equalize``d form (the same function, each activation's channels brought toward one range),
which makes up for the engine's single scale per activation tensor.

Transposed convolutions are trained and run as their sub-pixel form (the x86 engine has no
per-channel weights for them), with the taps that form does not have held at zero and the four
phases' biases tied, so the trained weights fold back into the float decoder unchanged:
machines without fast int8 run the same weights in float. Pixels are not bit-exact across
machines (float32 ones are not either); indices, and so rate, never depend on the decoder.
"""

from __future__ import annotations

import copy
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from vqcodec import kernels
from vqcodec.models.vqvae import VQVAE, ResBlock, VQVAEConfig, subpixel, transposed

RANGES = "int8.ranges"  # (len(points), 2) float32: the (min, max) of each quantized activation
EQUALIZE = 0.5  # the exponent of ``equalize`` that int8 training starts from


@contextmanager
def _quiet() -> Iterator[None]:
    """PyTorch's FX quantization warns on every call that it is to move to torchao: a note for
    PyTorch's users, not vqcodec's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def available() -> bool:
    """Whether this torch runs the int8 decoder: the x86 quantized engine and its convolutions."""
    engine = torch.backends.quantized.engine in ("x86", "fbgemm")
    return engine and hasattr(torch.ops.quantized, "conv2d_prepack")


def quantizable(decoder: nn.Sequential) -> nn.Sequential:
    """A copy of ``decoder`` with every transposed convolution in its sub-pixel form."""
    decoder = copy.deepcopy(decoder)
    for name, layer in list(decoder.named_children()):
        if isinstance(layer, nn.ConvTranspose2d):
            setattr(decoder, name, subpixel(layer))
    return decoder


def convolutions(decoder: nn.Sequential) -> list[int]:
    """Indices of ``decoder``'s convolutions (a transposed one in either form; not those inside
    residual blocks)."""
    return [n for n, layer in enumerate(decoder) if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d | nn.Sequential)]


def float_start(decoder: nn.Sequential, float_convs: int = 1) -> int:
    """Index of the first of ``decoder``'s layers that run in float: from its ``float_convs``-th
    convolution from the end on (1: the last layer, to RGB, which is always float; 2: the
    full-resolution layer before it too, whose 8-bit activations cost a high-PSNR level most)."""
    convs = convolutions(decoder)
    if not 1 <= float_convs <= len(convs) - 1:
        raise ValueError(f"float_convs must be 1..{len(convs) - 1}, not {float_convs}")
    return convs[-float_convs]


def _activations(decoder: nn.Sequential) -> list[tuple[list[nn.Module], list[nn.Module], list[nn.Module]]]:
    """(writers, observed, readers) of each activation of ``decoder`` that a convolution writes
    and another reads: the convolutions that write its channels, the modules whose outputs hold
    them, the convolutions that read them. A residual stream is one activation, written by the
    convolution before the blocks and by each block's second convolution."""
    out, current = [], None
    for layer in decoder:
        if isinstance(layer, ResBlock):
            current[0].append(layer.conv2)
            current[1].extend((layer.conv2, layer))
            current[2].append(layer.conv1)
            out.append(([layer.conv1], [layer.conv1], [layer.conv2]))
        elif isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
            if current is not None:
                current[2].append(layer)
                out.append(current)
            current = ([layer], [layer], [])
    return out


def _rescale(layer: nn.Conv2d | nn.ConvTranspose2d, k: torch.Tensor, outputs: bool) -> None:
    """Multiply ``layer``'s output channels by ``k`` (``outputs``), or divide its input channels."""
    axis = int(isinstance(layer, nn.ConvTranspose2d)) ^ int(not outputs)  # weights: (out, in) or (in, out)
    shape = [1] * layer.weight.dim()
    shape[axis] = -1
    if outputs:
        layer.weight.mul_(k.view(shape))
        layer.bias.mul_(k)
    else:
        layer.weight.div_(k.view(shape))


@torch.no_grad()
def equalize(decoder: nn.Sequential, latents: torch.Tensor, alpha: float = EQUALIZE) -> nn.Sequential:
    """A copy of ``decoder`` computing the same function, with the channels of each activation
    between two convolutions brought toward one range: channel c, whose largest magnitude over
    ``latents`` is m_c, multiplied by (max m / m_c) ** ``alpha`` in the convolutions that write
    it and divided out of those that read it (ReLU(k x) = k ReLU(x) for k > 0). The x86 engine
    quantizes activations with one scale per tensor, so a channel of small range gets few of the
    256 levels; rescaled, it gets more, while the weights that read it, quantized per output
    channel, get coarser: ``alpha`` trades the two (cross-layer equalization, Nagel et al.,
    "Data-Free Quantization Through Weight Equalization and Bias Correction", ICCV 2019; the
    exponent as in SmoothQuant, Xiao et al., ICML 2023). q6, quantized after training, loses
    0.079 dB without it and 0.032 dB with alpha 0.5 (8 validation images)."""
    decoder = copy.deepcopy(decoder)
    groups = _activations(decoder)
    peaks: dict[nn.Module, torch.Tensor] = {}

    def observe(module: nn.Module, _, output: torch.Tensor) -> None:
        peak = output.detach().abs().amax(dim=(0, 2, 3)).float()
        peaks[module] = torch.maximum(peaks[module], peak) if module in peaks else peak

    hooks = [m.register_forward_hook(observe) for group in groups for m in group[1]]
    try:
        decoder(latents)
    finally:
        for hook in hooks:
            hook.remove()
    for writers, observed, readers in groups:
        m = torch.stack([peaks[module] for module in observed]).amax(0)
        k = (m.max() / m.clamp_min(m.max() * 1e-3)) ** alpha
        for layer in writers:
            _rescale(layer, k, outputs=True)
        for layer in readers:
            _rescale(layer, k, outputs=False)
    return decoder


def qconfig_mapping(decoder: nn.Sequential, float_convs: int = 1):
    """Fake quantization of every layer's weights (per output channel, symmetric int8) and
    activations (per tensor, 0..255: the full range, which VNNI's int32 accumulation allows),
    but those of the layers from ``float_start`` on, which stay float."""
    from torch.ao.quantization import FakeQuantize, QConfig, QConfigMapping
    from torch.ao.quantization.observer import MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver

    activation = FakeQuantize.with_args(
        observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255, dtype=torch.quint8, reduce_range=False
    )
    weight = FakeQuantize.with_args(
        observer=MovingAveragePerChannelMinMaxObserver,
        averaging_constant=1.0,  # the range of the weights as they are, as the int8 network's
        quant_min=-128,
        quant_max=127,
        dtype=torch.qint8,
        qscheme=torch.per_channel_symmetric,
    )
    mapping = QConfigMapping().set_global(QConfig(activation=activation, weight=weight))
    for name, _ in list(decoder.named_children())[float_start(decoder, float_convs) :]:
        mapping.set_module_name(name, None)
    return mapping


def prepare(decoder: nn.Sequential, example: torch.Tensor, float_convs: int = 1) -> torch.fx.GraphModule:
    """The fake-quantized network of ``decoder`` (a float decoder in its trained layout) that
    quantization-aware training optimizes, with the sub-pixel layers kept transposed ones and
    the layers from ``float_start(decoder, float_convs)`` on in float."""
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    sub = quantizable(decoder).float().to(memory_format=torch.contiguous_format).train()
    with _quiet():
        net = prepare_qat_fx(sub, qconfig_mapping(sub, float_convs), example_inputs=(example,))
    for name, layer in decoder.named_children():
        if isinstance(layer, nn.ConvTranspose2d):
            conv = net.get_submodule(f"{name}.0")
            mask = (conv.weight.detach() != 0).to(conv.weight.dtype)
            conv.weight.register_hook(lambda grad, mask=mask: grad * mask)
            conv.bias.register_hook(lambda grad: grad.view(-1, 4).mean(1, keepdim=True).expand(-1, 4).reshape(-1))
    return net


def fake_quantizers(net: torch.fx.GraphModule) -> list[nn.Module]:
    """The activations' fake quantizers of a prepared network, in graph order (one that several
    activations share, as a ReLU shares its input's, once for each)."""
    nodes = [n for n in net.graph.nodes if n.op == "call_module" and "activation_post_process" in n.target]
    return [net.get_submodule(node.target) for node in nodes]


def points(decoder: nn.Sequential, float_convs: int = 1) -> list[str]:
    """Where the int8 network quantizes, in order: its input, each convolution's output (a
    transposed one's sub-pixel convolution ``name.0``; with the ReLU that follows it, if any),
    and each residual sum (with its ReLU, if one follows), up to the float layers."""
    out = ["input"]
    for name, layer in list(decoder.named_children())[: float_start(decoder, float_convs)]:
        if isinstance(layer, ResBlock):
            out += [f"{name}.conv1", f"{name}.conv2", f"{name}.add"]
        elif isinstance(layer, nn.Conv2d):
            out.append(name)
        elif isinstance(layer, nn.ConvTranspose2d):
            out.append(f"{name}.0")
    return out


def ranges(net: torch.fx.GraphModule, decoder: nn.Sequential, float_convs: int = 1) -> torch.Tensor:
    """(len(points), 2): the (min, max) of each of ``decoder``'s ``points`` that its prepared
    network ``net`` has learned, what ships as ``RANGES``."""
    nodes = {node.name: node for node in net.graph.nodes}
    observed = {}  # node name -> the fake quantizer of its output
    for node in nodes.values():
        if node.op == "call_module" and "activation_post_process" in node.target:
            observed.setdefault(node.args[0].name, net.get_submodule(node.target))
    by_target = {node.target: node for node in nodes.values() if node.op == "call_module"}

    def output_of(node: torch.fx.Node) -> nn.Module:
        if node.name in observed:
            return observed[node.name]
        (user,) = node.users  # an add fused with the ReLU after it: quantized after the ReLU
        return observed[user.name]

    def sum_of(block: str) -> torch.fx.Node:
        conv2 = next(iter(by_target[f"{block}.conv2"].users))  # its output's fake quantizer
        return next(user for user in conv2.users if user.op == "call_function")

    quantizers = []
    for point in points(decoder, float_convs):
        if point == "input":
            node = next(node for node in nodes.values() if node.op == "placeholder")
        elif point.endswith(".add"):
            node = sum_of(point.removesuffix(".add"))
        else:
            node = by_target[point]
        quantizers.append(output_of(node))
    observers = [q.activation_post_process for q in quantizers]
    return torch.stack([torch.stack([o.min_val, o.max_val]) for o in observers]).float()


def freeze_ranges(net: torch.fx.GraphModule) -> None:
    """Stop the activation ranges from following the batches (the last part of training; the
    weights' scales go on following the weights)."""
    for q in fake_quantizers(net):
        q.disable_observer()


@contextmanager
def ranges_held(net: torch.fx.GraphModule) -> Iterator[None]:
    """The activation ranges held where they are (for validation passes), then as they were."""
    quantizers = fake_quantizers(net)
    enabled = [int(q.observer_enabled[0]) for q in quantizers]
    freeze_ranges(net)
    try:
        yield
    finally:
        for q, on in zip(quantizers, enabled, strict=True):
            q.observer_enabled[0] = on


def float_weights(net: torch.fx.GraphModule, decoder: nn.Sequential) -> dict[str, torch.Tensor]:
    """The state dict of ``decoder``'s trained layout holding a prepared network's weights."""
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    for name, layer in decoder.named_children():
        if isinstance(layer, nn.ConvTranspose2d):
            folded = transposed(net.get_submodule(f"{name}.0"), layer)
            state[f"{name}.weight"], state[f"{name}.bias"] = folded.weight.detach(), folded.bias.detach()

    def weight(key: str) -> torch.Tensor:  # a float convolution that FX fused with its ReLU holds it as name.0
        name, param = key.rsplit(".", 1)
        return state[key] if key in state else state[f"{name}.0.{param}"]

    return {k: weight(k) for k in decoder.state_dict()}


def folded_state(cfg: VQVAEConfig, state: dict[str, torch.Tensor], float_convs: int = 1) -> dict[str, torch.Tensor]:
    """The state dict of a VQ-VAE whose decoder was trained for int8 (a run's checkpoint, with
    the fake-quantized network): the float decoder's layout, and the ranges as ``RANGES``."""
    model = VQVAE(cfg)
    plain = copy.deepcopy(model.decoder)
    model.decoder = prepare(model.decoder, model.quantizer.lookup(torch.zeros(1, 8, 8).long()), float_convs)
    model.load_state_dict(state)
    out = {k: v for k, v in model.state_dict().items() if not k.startswith("decoder.")}
    out.update({f"decoder.{k}": v for k, v in float_weights(model.decoder, plain).items()})
    return out | {RANGES: ranges(model.decoder, plain, float_convs)}


def activation_qparams(low: float, high: float) -> tuple[float, int]:
    """(scale, zero point) of 0..255 over [low, high] (widened to hold 0), as the fake quantizers
    of training compute them."""
    from torch.ao.quantization.observer import MinMaxObserver

    observer = MinMaxObserver(dtype=torch.quint8, reduce_range=False)
    observer.min_val.fill_(low)
    observer.max_val.fill_(high)
    scale, zero_point = observer.calculate_qparams()
    return float(scale), int(zero_point)


def packed(conv: nn.Conv2d):
    """A convolution's weights as int8 (symmetric, one scale per output channel: the range of
    the weights themselves, as in training), packed for the x86 engine, with its float bias."""
    from torch.ao.quantization.observer import PerChannelMinMaxObserver

    observer = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    w = conv.weight.detach().float()
    observer(w)
    scale, zero_point = observer.calculate_qparams()
    weight = torch.quantize_per_channel(w, scale.double(), zero_point, 0, torch.qint8)
    bias = conv.bias.detach().float()
    return torch.ops.quantized.conv2d_prepack(weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


class Int8Decoder(nn.Module):
    """The int8 network of a float decoder trained for it (``prepare``), from its weights and
    its shipped activation ranges: quantized PyTorch operations of the x86 engine, built
    without tracing anything, so loading it costs milliseconds. It computes what training's
    fake-quantized network computed (tests/test_int8.py checks it against PyTorch's own
    conversion of that network), and returns float pixels (its last layer is float)."""

    def __init__(self, decoder: nn.Sequential, activation_ranges: torch.Tensor):
        super().__init__()
        float_convs = shipped_float_convs(decoder, activation_ranges)
        quantized = points(decoder, float_convs)
        qparams = dict(zip(quantized, (activation_qparams(*r) for r in activation_ranges.tolist()), strict=True))
        self.input = qparams["input"]
        children = list(quantizable(decoder).named_children())
        start = float_start(decoder, float_convs)
        self.last = nn.Sequential(OrderedDict(children[start:]))
        self.rgb = rgb_operands(self.last)
        self.steps: list[tuple] = []  # (operation, arguments) in order
        fused = set()  # ReLU layers done by the operation before them
        for n, (name, layer) in enumerate(children[:start]):
            if name in fused:
                continue
            relu_next = n + 1 < start and isinstance(children[n + 1][1], nn.ReLU)
            if isinstance(layer, ResBlock):
                convs = [(packed(conv), *qparams[f"{name}.{part}"]) for part, conv in layer.named_children()]
                self.steps.append(("block", (*convs, *qparams[f"{name}.add"], relu_next)))
            elif isinstance(layer, nn.Conv2d):
                self.steps.append(("conv", (packed(layer), *qparams[name], relu_next)))
            elif isinstance(layer, nn.Sequential):  # a sub-pixel convolution: its convolution, then the shuffle
                phases = tuple(packed(conv) for conv in phase_convolutions(layer))
                self.steps.append(("upsample", (phases, *qparams[f"{name}.0"], relu_next)))
            else:
                self.steps.append(("relu", ()))
            if relu_next:
                fused.add(children[n + 1][0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.quantize_per_tensor(x.float().contiguous(), *self.input, torch.quint8)
        for operation, args in self.steps:
            q = getattr(self, f"_{operation}")(q, *args)
        return self.last(q.dequantize()) if self.rgb is None else self._rgb(q, *self.rgb)

    @staticmethod
    def _rgb(q: torch.Tensor, weight: np.ndarray, bias: np.ndarray) -> torch.Tensor:
        """The float last layer (``rgb_operands``) straight from the 8-bit activation, its rows
        split between torch's threads."""
        n, _, h, w = q.shape
        values = np.ascontiguousarray(_values(q).permute(0, 2, 3, 1).numpy())
        out = np.empty((n, len(bias), h, w), np.float32)
        scale, zero_point = q.q_scale(), q.q_zero_point()
        parts = max(1, min(torch.get_num_threads(), h))
        jobs = [(i, h * k // parts, h * (k + 1) // parts) for i in range(n) for k in range(parts)]

        def run(job: tuple[int, int, int]) -> None:
            i, start, stop = job
            kernels.conv3x3_uint8(values[i], zero_point, scale, weight, bias, out[i], start, stop)

        if len(jobs) == 1:
            run(jobs[0])
        else:
            with ThreadPoolExecutor(parts) as pool:
                list(pool.map(run, jobs))
        return torch.from_numpy(out)

    @staticmethod
    def _conv(q: torch.Tensor, weights, scale: float, zero_point: int, relu: bool) -> torch.Tensor:
        conv = torch.ops.quantized.conv2d_relu if relu else torch.ops.quantized.conv2d
        return conv(q, weights, scale, zero_point)

    @staticmethod
    def _block(q: torch.Tensor, conv1: tuple, conv2: tuple, scale: float, zero_point: int, relu: bool) -> torch.Tensor:
        h = Int8Decoder._conv(torch.relu(q), *conv1, True)
        h = Int8Decoder._conv(h, *conv2, False)
        add = torch.ops.quantized.add_relu if relu else torch.ops.quantized.add
        return add(q, h, scale, zero_point)

    @staticmethod
    def _upsample(q: torch.Tensor, phases: tuple, scale: float, zero_point: int, relu: bool) -> torch.Tensor:
        """A sub-pixel convolution and its shuffle: the four ``phase_convolutions``, each
        output's 8-bit values copied into its place in the shuffled tensor (channels-last, so as
        runs of channels) through views that share their memory."""
        n, _, h, w = q.shape
        conv = torch.ops.quantized.conv2d_relu if relu else torch.ops.quantized.conv2d
        outputs = [conv(q, weights, scale, zero_point) for weights in phases]  # (n, c, h + 1, w + 1) each
        c = outputs[0].shape[1]
        values = torch.empty(n, h, 2, w, 2, c, dtype=torch.uint8)
        for phase, out in enumerate(outputs):
            a, b = divmod(phase, 2)
            values[:, :, a, :, b] = _values(out).permute(0, 2, 3, 1)[:, a : a + h, b : b + w]
        values = values.view(n, 2 * h, 2 * w, c).permute(0, 3, 1, 2)
        return torch._make_per_tensor_quantized_tensor(values, scale, zero_point)

    @staticmethod
    def _relu(q: torch.Tensor) -> torch.Tensor:
        return torch.relu(q)


def _values(q: torch.Tensor) -> torch.Tensor:
    """The 8-bit values of a quantized tensor, sharing its memory (``int_repr`` copies them)."""
    return torch.empty(0, dtype=torch.uint8).set_(q.untyped_storage(), q.storage_offset(), q.size(), q.stride())


def phase_convolutions(layer: nn.Sequential) -> list[nn.Conv2d]:
    """The sub-pixel convolution ``layer`` (a 3x3 convolution to four phases of each channel and
    a 2x pixel shuffle, ``subpixel``) as four 2x2 convolutions with padding 1, one per phase
    (a, b), whose output rows a..a + h and columns b..b + w are that phase: the taps the 3x3
    form holds at zero are not computed (4 of its 9).
    In int8 the same sums (exact integers), so the same numbers."""
    conv, shuffle = layer
    if shuffle.upscale_factor != 2:
        raise ValueError(f"not a 2x sub-pixel convolution: {layer}")
    w = conv.weight.detach().view(-1, 2, 2, conv.in_channels, 3, 3)  # (channel, a, b, in, row, column)
    out = []
    for a in range(2):
        for b in range(2):
            kept = torch.zeros(3, 3, dtype=torch.bool)
            kept[a : a + 2, b : b + 2] = True
            if w[:, a, b][..., ~kept].any():
                raise ValueError("a sub-pixel convolution with taps a transposed convolution does not have")
            phase = nn.Conv2d(conv.in_channels, w.shape[0], 2, padding=1).to(w.dtype)
            phase.weight.data.copy_(w[:, a, b, :, a : a + 2, b : b + 2])
            phase.bias.data.copy_(conv.bias.detach().view(-1, 4)[:, 2 * a + b])
            out.append(phase)
    return out


def rgb_operands(last: nn.Sequential) -> tuple[np.ndarray, np.ndarray] | None:
    """(weights (O, 9 C) in (column, row, channel) order, bias) of a float tail that is a single
    3x3 convolution with padding 1 (a factor-2 decoder's last layer, to RGB at full resolution),
    which ``kernels.conv3x3_uint8`` computes from the 8-bit activation: on a q6 network, a Kodak
    image, one thread: 0.65x the time of dequantizing it and oneDNN's convolution. None for any other tail
    (a sub-pixel convolution's 12 outputs oneDNN computes faster)."""
    if len(last) != 1 or not isinstance(last[0], nn.Conv2d):
        return None
    conv = last[0]
    if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.padding != (1, 1) or conv.groups != 1:
        return None
    weight = conv.weight.detach().float().permute(0, 3, 2, 1).reshape(conv.out_channels, -1)
    return weight.contiguous().numpy(), conv.bias.detach().float().numpy()


def shipped_float_convs(decoder: nn.Sequential, activation_ranges: torch.Tensor) -> int:
    """How many of ``decoder``'s last convolutions its shipped ranges leave in float: the one
    whose ``points`` the ranges are (they say it; no other metadata needed)."""
    for float_convs in range(1, len(convolutions(decoder))):
        if len(points(decoder, float_convs)) == len(activation_ranges):
            return float_convs
    raise ValueError(f"{len(activation_ranges)} activation ranges fit no int8 network of this decoder")


def int8_decoder(decoder: nn.Sequential, activation_ranges: torch.Tensor) -> Int8Decoder | None:
    """The int8 network of a float ``decoder`` trained for it, with its shipped activation
    ranges; None where this torch has no x86 quantized engine (then the float decoder runs)."""
    if not available():
        return None
    with _quiet():
        return Int8Decoder(decoder, activation_ranges)
