"""PixelCNN prior over VQ index grids, trained in floating point and run as an integer network.

The prior is a PixelCNN (van den Oord et al., "Conditional Image Generation with PixelCNN
Decoders", NeurIPS 2016) with one mask-A convolution followed by 1x1 (mask-B) layers. The
mask-A layer sees a causal window of radius R: the R rows above, columns -R..+R, and the R
indices to the left on the current row. Its input is the one-hot index, so the layer is a
sum of per-offset embedding rows. With this bounded receptive field every position on the
wavefront t = (R+1)*i + j depends only on earlier wavefronts, so a decoder can decode a
whole wavefront at once (see vqcodec.entropy).

For decoding to be bit-exact on every platform, inference is an integer network (Balle,
Johnston, Minnen, "Integer networks for data compression with latent-variable models",
ICLR 2019): 8-bit weights with a power-of-two scale per output channel, activations
clipped to 0..255, rescaling by exact right shifts. Every dot product is a sum of at most
``hidden`` terms of magnitude < 127 * 255, so it is exact in float64 (indeed in float32)
whatever the summation order or kernel. Training simulates that quantization with
straight-through rounding so the float model and its integer export agree.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vqcodec import kernels
from vqcodec.hardware import int8_matmul_fast

ACT_BITS = 5  # activations are integers 0..255 at scale 2**-5
ACT_MAX = 255
TABLE_BITS = 12  # first-layer table entries at scale 2**-12
WEIGHT_MAX = 127
LOGIT_BITS = 4  # logits at scale 2**-4 nats
INT32_RANGE = (-(2**31), 2**31 - 1)


@dataclass
class PriorConfig:
    """Architecture of a PixelCNN prior; stored in the weights' metadata."""

    codebook_size: int = 512
    radius: int = 2
    hidden: int = 128
    layers: int = 2
    groups: int = 1  # > 1: each index is coded as its group, then its member (its place in the code order)

    def __post_init__(self) -> None:
        if self.groups < 1 or self.groups & (self.groups - 1) or self.codebook_size % self.groups:
            raise ValueError(
                f"groups ({self.groups}) must be a power of two that divides the codebook size ({self.codebook_size})"
            )

    @property
    def members(self) -> int:
        """Indices per group (the codebook size when there is one group)."""
        return self.codebook_size // self.groups

    def to_dict(self) -> dict:
        return asdict(self)


def causal_offsets(radius: int) -> list[tuple[int, int]]:
    """(dy, dx) offsets of the mask-A window, in a fixed order."""
    above = [(dy, dx) for dy in range(-radius, 0) for dx in range(-radius, radius + 1)]
    return above + [(0, dx) for dx in range(-radius, 0)]


def round_half_up_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half up (as the integer network's shifts do) in the forward pass, identity gradient."""
    return x + (torch.floor(x + 0.5) - x).detach()


def weight_shifts(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel exponent k so that round(w * 2**k) fits in [-127, 127]."""
    peak = w.detach().abs().amax(dim=1).clamp_min(1e-8)
    return torch.floor(torch.log2(WEIGHT_MAX / peak)).clamp(1, 24)


class PixelCNNPrior(nn.Module):
    """Logits of p(index_i | indices before i) for every position of (B, H, W) grids.

    With ``groups`` G > 1 the distribution is factored as p(group) p(member | group): one head
    of G logits, and the K logits of the output layer normalised within each group of K / G.
    The factorisation is exact (the chain rule), and the coder then builds two tables of G and
    K / G entries per index instead of one of K: the per-index work of coding falls from K to
    about 2 sqrt(K).
    """

    def __init__(self, cfg: PriorConfig):
        super().__init__()
        self.cfg = cfg
        k, n_off = cfg.codebook_size, len(causal_offsets(cfg.radius))
        # One table row per (offset, symbol); symbol k (one past the codebook) marks "outside the grid".
        self.table = nn.Parameter(torch.randn(n_off, k + 1, cfg.hidden) / math.sqrt(n_off))
        self.bias = nn.Parameter(torch.zeros(cfg.hidden))
        self.hidden = nn.ModuleList(nn.Linear(cfg.hidden, cfg.hidden) for _ in range(cfg.layers))
        self.out = nn.Linear(cfg.hidden, k)
        self.group_out = None
        if cfg.groups > 1:
            self.group_out = nn.Linear(cfg.hidden, cfg.groups)
            # order[p]: the code at place p of the grouped order (group p // members); set_code_order
            self.register_buffer("order", torch.arange(k))
        self.quantized = False

    def set_code_order(self, order: torch.Tensor) -> None:
        """Code the indices in groups of consecutive places of ``order`` (a permutation of the
        codebook, e.g. ``quantization.grouped_order``) instead of consecutive index values."""
        self.order.copy_(order)

    def context(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, H, W) indices -> (B, H, W, n_offsets) indices of the causal window."""
        r, k = self.cfg.radius, self.cfg.codebook_size
        padded = F.pad(idx, (r, r, r, 0), value=k)
        h, w = idx.shape[1], idx.shape[2]
        return torch.stack(
            [padded[:, r + dy : r + dy + h, r + dx : r + dx + w] for dy, dx in causal_offsets(r)], dim=-1
        )

    def _act(self, h: torch.Tensor) -> torch.Tensor:
        if self.quantized:
            return round_half_up_ste(h.clamp(0, ACT_MAX / 2**ACT_BITS) * 2**ACT_BITS) / 2**ACT_BITS
        return h.clamp(0, ACT_MAX / 2**ACT_BITS)

    def _layer_weights(self, layer: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
        """A 1x1 layer's weight and bias, as the integer network has them when quantized."""
        if not self.quantized:
            return layer.weight, layer.bias
        scale = 2 ** weight_shifts(layer.weight)
        w = round_half_up_ste(layer.weight * scale[:, None]) / scale[:, None]
        b = round_half_up_ste(layer.bias * scale * 2**ACT_BITS) / (scale * 2**ACT_BITS)
        return w, b

    def _linear(self, layer: nn.Linear, a: torch.Tensor) -> torch.Tensor:
        return F.linear(a, *self._layer_weights(layer))

    def features(self, ctx: torch.Tensor) -> torch.Tensor:
        """Causal-window indices (..., n_offsets) -> last hidden activations (..., hidden)."""
        table, bias = self.table, self.bias
        if self.quantized:
            table = round_half_up_ste(table * 2**TABLE_BITS) / 2**TABLE_BITS
            bias = round_half_up_ste(bias * 2**TABLE_BITS) / 2**TABLE_BITS
        n_off, rows = table.shape[0], table.shape[1]
        offsets = torch.arange(n_off, device=ctx.device) * rows
        flat_ctx = (ctx + offsets).reshape(-1, n_off)
        h = F.embedding_bag(flat_ctx, table.reshape(n_off * rows, -1), mode="sum").view(*ctx.shape[:-1], -1) + bias
        a = self._act(h)
        for layer in self.hidden:
            a = self._act(self._linear(layer, a))
        return a

    def _round_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return round_half_up_ste(logits * 2**LOGIT_BITS) / 2**LOGIT_BITS if self.quantized else logits

    def _logits(self, layer: nn.Linear, a: torch.Tensor) -> torch.Tensor:
        return self._round_logits(self._linear(layer, a))

    def forward(self, idx: torch.Tensor, bits: bool = False) -> torch.Tensor:
        """(B, H, W) int64 -> logits (B, H, W, K); with groups, the log-probabilities
        log p(group) + log p(member | group), which are logits of the same distribution.
        ``bits``: instead, the total cross-entropy of ``idx`` in bits (what training minimises)."""
        a = self.features(self.context(idx))
        if bits and self.group_out is not None:
            return self._grouped_log_p(a.reshape(-1, self.cfg.hidden), idx.reshape(-1, 1)).sum() / -math.log(2)
        logits = self._distribution(a)
        return cross_entropy_bits(logits, idx) if bits else logits

    def _distribution(self, a: torch.Tensor) -> torch.Tensor:
        """Hidden activations (..., hidden) -> logits (..., K) over the codes."""
        logits = self._logits(self.out, a)
        if self.group_out is not None:
            members = logits.unflatten(-1, (self.cfg.groups, self.cfg.members)).log_softmax(-1)
            log_p = (members + self._logits(self.group_out, a).log_softmax(-1)[..., None]).flatten(-2)
            logits = log_p[..., torch.argsort(self.order)]  # place -> code
        return logits

    @torch.no_grad()
    def code_lengths(self, idx: torch.Tensor, codes: torch.Tensor, logits: int = 2**22) -> torch.Tensor:
        """What each of ``codes`` (B, H, W, T) would cost at its position of the grids ``idx``
        (B, H, W), given the neighbours it has there: -log2 p(code | causal window), float32
        (B, H, W, T); as many grid rows at a time as need at most about ``logits`` logits, so
        that memory stays bounded (with groups, only the candidates' groups have logits)."""
        ctx = self.context(idx)
        bits = torch.empty(codes.shape, device=idx.device)
        width = codes.shape[-1] * self.cfg.members if self.group_out is not None else self.cfg.codebook_size
        rows = max(1, logits // (idx.shape[0] * idx.shape[2] * width))
        for r in range(0, idx.shape[1], rows):
            a, part = self.features(ctx[:, r : r + rows]), codes[:, r : r + rows]
            if self.group_out is not None:
                log_p = self._grouped_log_p(a.reshape(-1, self.cfg.hidden), part.reshape(-1, part.shape[-1]))
            else:
                log_p = self._distribution(a).float().log_softmax(-1).gather(-1, part)
            bits[:, r : r + rows] = log_p.view(part.shape) / -math.log(2)
        return bits

    def _grouped_log_p(self, a: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """log p(code) in nats (N, T) of ``codes`` (N, T) given hidden activations ``a`` (N,
        hidden), with groups: log p(group) + log p(member | group), where the member logits are
        computed only for the groups that ``codes`` fall in (what makes such a prior cheap to
        train, and its code lengths cheap to price)."""
        place = torch.argsort(self.order)[codes]
        groups, members = place // self.cfg.members, place % self.cfg.members
        log_p = self._logits(self.group_out, a).log_softmax(-1).gather(-1, groups)
        w, b = self._layer_weights(self.out)
        w, b = w.view(self.cfg.groups, self.cfg.members, -1), b.view(self.cfg.groups, -1)
        for g in torch.unique(groups).tolist():
            mask = groups == g
            here = mask.any(-1).nonzero().squeeze(1)
            member = self._round_logits(F.linear(a[here], w[g], b[g])).log_softmax(-1).gather(-1, members[here])
            log_p = log_p.index_put((here,), torch.where(mask[here], log_p[here] + member, log_p[here]))
        return log_p

    def bits(self, idx: torch.Tensor) -> torch.Tensor:
        """Total cross-entropy in bits of the grids ``idx`` under the prior."""
        return self(idx, bits=True)


def cross_entropy_bits(logits: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Total cross-entropy in bits of indices (B, H, W) under logits (B, H, W, K)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), idx.reshape(-1), reduction="sum") / math.log(2)


class IntegerPrior:
    """The exact integer form of a PixelCNNPrior: what the codec runs, on any device.

    The integers live in floating-point tensors so that fast library kernels do the work, and
    every operation is exact: each first-layer sum has at most ``n_offsets + 1`` terms and each
    dot product at most ``hidden`` terms below 127 * 255 plus a bias, so every partial sum
    stays below 2**24 and float32 represents it exactly whatever the summation order, kernel
    or batch; rescaling multiplies by 2**-k (exact) and floors, which is the arithmetic right
    shift. float64 is used instead where float32 might be computed in reduced precision (TF32
    on CUDA, or a float32 matmul precision other than "highest") or the bounds do not hold.
    """

    def __init__(
        self,
        cfg: PriorConfig,
        tensors: dict[str, torch.Tensor],
        device: str | torch.device = "cpu",
        int8: bool | None = None,
    ):
        """``int8``: whether the 1x1 layers run as int8 products on the CPU (None: where
        ``int8_matmul_fast`` finds them faster); the same integers either way."""
        self.cfg = cfg
        self.device = torch.device(device)
        # the backend, chosen once: the compiled loops (vqcodec.kernels) on the CPU, torch elsewhere
        self.compiled = self.device.type == "cpu"
        t = {name: v.to(self.device, torch.int64) for name, v in tensors.items()}
        n_off = len(causal_offsets(cfg.radius))
        first_shift = self._first_shift = TABLE_BITS - ACT_BITS
        # the first layer: table, bias + rounding half (and that bias less 128 << shift, for the int8
        # path's activations shifted by -128), and its scale 2**-shift: a Python number, so that the
        # bias add and the rescaling are one exact torch.add, bias * s + s * sums
        bias = t["bias"] + (1 << (first_shift - 1))
        self._first = (t["table"], bias, bias - (128 << first_shift))
        self._first_scale = 2.0**-first_shift
        names = output_names(cfg)
        extra = [0] * cfg.layers + [ACT_BITS - LOGIT_BITS] * (len(names) - cfg.layers)  # logits keep LOGIT_BITS
        # (weights (in, out), bias + rounding half, shift) of each 1x1 layer: out = (a @ w + b) >> shift
        integer = [
            (t[f"w{n}"].t().contiguous(), t[f"b{n}"] + (1 << (t[f"k{n}"] + e - 1)), t[f"k{n}"] + e)
            for n, e in zip(names, extra, strict=True)
        ]
        self._layers = [(w, b, 2.0 ** (-shift.double())) for w, b, shift in integer]
        # On a CPU with VNNI or AMX the same layers run as int8 x int8 -> int32 matrix products
        # (several times faster than float32, and exact by construction); activations 0..255 enter
        # shifted by -128, which the bias makes up for: a @ w + b = (a - 128) @ w + (b + 128 * column sums).
        # The hidden layers' outputs leave shifted by -128 too: (x >> k) - 128 = (x - (128 << k)) >> k.
        self._int8 = None
        hidden = [n < cfg.layers for n in range(len(integer))]
        shifted = [(w, b + 128 * w.sum(0) - (128 << k) * h, k) for (w, b, k), h in zip(integer, hidden, strict=True)]
        fits = all(int(b.abs().max()) + 128 * WEIGHT_MAX * w.shape[0] < 2**31 for w, b, _ in shifted)
        if self.compiled and fits and (int8_matmul_fast() if int8 is None else int8):
            self._int8 = [(w.to(torch.int8), b.numpy(), shift.numpy()) for w, b, shift in shifted]
        bound = int(t["table"].abs().amax()) * n_off + max(int(b.abs().amax()) for b in self._first[1:])
        for w, b, _ in self._layers:
            bound = max(bound, WEIGHT_MAX * ACT_MAX * w.shape[0] + int(b.abs().amax()))
        self.float32_exact = bound < 2**24
        if bound >= 2**53:
            raise ValueError("prior tensors too large for exact floating-point arithmetic")
        self.offsets = torch.arange(n_off, device=self.device) * (cfg.codebook_size + 1)
        self.order = t.get("order", torch.arange(cfg.codebook_size, device=self.device))  # place -> code
        self.place = torch.argsort(self.order)  # code -> place
        self._cache: dict = {}
        if self.compiled:
            self._kernel = self._kernel_operands(integer)

    def _kernel_operands(self, integer: list[tuple[torch.Tensor, ...]]) -> dict[str, tuple[np.ndarray, ...]]:
        """What the CPU's compiled loops (vqcodec.kernels) take: the first layer's table (in 16
        bits where it fits: half the memory traffic) and biases (int32 where its sums fit, the
        accumulator's type), and with groups the output layer by group, (G, hidden, K / G)."""
        table, *biases = self._first
        peak, n_off = int(table.abs().amax()), table.shape[0] // (self.cfg.codebook_size + 1)
        acc = np.int32 if peak * n_off + max(int(b.abs().amax()) for b in biases) < 2**31 else np.int64
        small = torch.int16 if peak < 2**15 else torch.int32
        out = {"first": (table.to(small).numpy(), *(b.numpy().astype(acc) for b in biases))}
        if self.cfg.groups > 1:
            w, b, shift = self._int8[self.cfg.layers] if self._int8 is not None else integer[self.cfg.layers]
            g, m = self.cfg.groups, self.cfg.members
            weights = w.view(-1, g, m).permute(1, 0, 2).to(torch.int8).contiguous().numpy()
            b = np.asarray(b)
            acc = np.int32 if ACT_MAX * WEIGHT_MAX * w.shape[0] + int(np.abs(b).max()) < 2**31 else np.int64
            out["members"] = (weights, b.astype(acc).reshape(g, m), np.asarray(shift).reshape(g, m))
        return out

    @staticmethod
    def export(model: PixelCNNPrior) -> dict[str, torch.Tensor]:
        """Integer tensors of a (quantization-aware trained) float prior.

        The first-layer table, (window x (K + 1)) x hidden entries and most of a file, is
        stored as int16 when its values fit (they are about +-6000 in practice)."""
        table = torch.floor(model.table.detach() * 2**TABLE_BITS + 0.5).reshape(-1, model.cfg.hidden)
        fits = int(table.abs().amax()) <= torch.iinfo(torch.int16).max
        out: dict[str, torch.Tensor] = {
            "table": table.to(torch.int16 if fits else torch.int32),
            "bias": torch.floor(model.bias.detach() * 2**TABLE_BITS + 0.5).to(torch.int32),
        }
        layers = [*model.hidden, model.out]
        if model.group_out is not None:
            layers.append(model.group_out)
            out["order"] = model.order.to(torch.int16 if model.cfg.codebook_size <= 2**15 else torch.int32)
        for name, layer in zip(output_names(model.cfg), layers, strict=True):
            k = weight_shifts(layer.weight)
            out[f"w{name}"] = torch.floor(layer.weight.detach() * 2 ** k[:, None] + 0.5).to(torch.int8)
            out[f"b{name}"] = torch.floor(layer.bias.detach() * 2 ** (k + ACT_BITS) + 0.5).to(torch.int64)
            out[f"k{name}"] = k.to(torch.int8)
        return out

    def _exact_dtype(self) -> torch.dtype:
        if not self.float32_exact:
            return torch.float64
        if self.device.type == "cuda":
            return torch.float64 if torch.backends.cuda.matmul.allow_tf32 else torch.float32
        return torch.float32 if torch.get_float32_matmul_precision() == "highest" else torch.float64

    def _tensors(self, dtype: torch.dtype) -> tuple:
        """The first layer (table, scaled bias, scaled bias of the int8 path) and the 1x1 layers,
        in ``dtype``."""
        if dtype not in self._cache:
            table, *biases = self._first
            first = (table.to(dtype), *((b * self._first_scale).to(dtype) for b in biases))
            layers = [tuple(x.to(dtype) for x in layer) for layer in self._layers]
            self._cache[dtype] = (first, layers)
        return self._cache[dtype]

    def features(self, ctx: torch.Tensor) -> torch.Tensor:
        """Causal-window indices (N, n_offsets) -> last hidden activations (N, hidden): integers
        0..255 in the exact float type, or as int8 shifted by -128 where the products are int8."""
        if not self.compiled:
            return self._tensor_features(ctx)
        windows = np.ascontiguousarray(ctx.numpy())
        n, k = windows.shape
        return torch.from_numpy(self.compiled_features(windows.reshape(-1), np.arange(n) * k, np.arange(k)))

    def _tensor_features(self, ctx: torch.Tensor) -> torch.Tensor:
        """``features`` in torch operations, on any device (in the exact float type)."""
        (table, bias, _), layers = self._tensors(self._exact_dtype())
        sums = F.embedding_bag(ctx + self.offsets, table, mode="sum")
        a = torch.add(bias, sums, alpha=self._first_scale).floor_().clamp_(0, ACT_MAX)
        for w, b, scale in layers[: self.cfg.layers]:
            a = torch.addmm(b, a, w).mul_(scale).floor_().clamp_(0, ACT_MAX)
        return a

    def compiled_features(self, flat: np.ndarray, positions: np.ndarray, window: np.ndarray) -> np.ndarray:
        """``features`` on the CPU, numpy in and out: at ``positions`` of a flat index grid whose
        causal window is the flat offsets ``window``. The decoder runs this once per wavefront on
        a few dozen positions, where each operation's fixed cost dominates: the first layer is one
        compiled pass (the window read in place), and so is each int8 layer's rescaling."""
        table, bias, bias_int8 = self._kernel["first"]
        rows, shape = self.cfg.codebook_size + 1, (len(positions), self.cfg.hidden)
        if self._int8 is not None:
            out = np.empty(shape, np.int8)
            a = kernels.first_layer(flat, positions, window, rows, table, bias_int8, self._first_shift, -128, 127, out)
            for n in range(self.cfg.layers):
                a = self._int8_layer(a, n, -128, 127, np.int8)
            return a
        a = torch.empty(shape, dtype=self._exact_dtype())
        kernels.first_layer(flat, positions, window, rows, table, bias, self._first_shift, 0, ACT_MAX, a.numpy())
        for w, b, scale in self._tensors(a.dtype)[1][: self.cfg.layers]:
            a = torch.addmm(b, a, w).mul_(scale).floor_().clamp_(0, ACT_MAX)
        return a.numpy()

    def _int8_layer(self, a: np.ndarray, layer: int, low: int, high: int, dtype: type) -> np.ndarray:
        """An int8 layer: exact int32 products (VNNI/AMX), then (sums + bias) >> shift clamped to
        low..high in one compiled pass."""
        w, b, shift = self._int8[layer]
        sums = torch._int_mm(torch.from_numpy(a), w).numpy()
        return kernels.requantize(sums, b, shift, low, high, np.empty(sums.shape, dtype))

    def compiled_output(self, a: np.ndarray, layer: int) -> np.ndarray:
        """On the CPU, numpy in and out: int32 logits of output layer ``layer`` (``cfg.layers``:
        the codes, or with groups their members in every group; ``cfg.layers + 1``: the groups)."""
        if self._int8 is not None:
            return self._int8_layer(a, layer, *INT32_RANGE, np.int32)
        x = torch.from_numpy(a)
        w, b, scale = self._tensors(x.dtype)[1][layer]
        return torch.addmm(b, x, w).mul_(scale).floor_().to(torch.int32).numpy()

    def compiled_member_logits(self, a: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """``member_logits`` on the CPU, numpy in and out: one compiled loop."""
        return kernels.member_logits(a, groups, *self._kernel["members"])

    def _output(self, a: torch.Tensor, layer: int) -> torch.Tensor:
        if self.compiled:
            return torch.from_numpy(self.compiled_output(a.numpy(), layer))
        w, b, scale = self._tensors(a.dtype)[1][layer]
        return torch.addmm(b, a, w).mul_(scale).floor_().to(torch.int32)

    def logits(self, ctx: torch.Tensor) -> torch.Tensor:
        """Causal-window indices (N, n_offsets) -> int32 logits (N, K) at scale 2**-LOGIT_BITS
        (a prior with one group)."""
        return self._output(self.features(ctx), self.cfg.layers)

    def group_logits(self, a: torch.Tensor) -> torch.Tensor:
        """Hidden activations (N, hidden) -> int32 logits (N, G) of the index's group."""
        return self._output(a, self.cfg.layers + 1)

    def member_logits(self, a: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """Hidden activations (N, hidden) and each index's group (N,) -> int32 logits (N, K / G)
        of its member: the output layer's logits of that group's members, and only those (a
        G-th of the whole layer's work), each the same exact integer sum as in the whole layer.
        On the CPU one compiled loop; elsewhere a sparse product."""
        if self.compiled:
            return torch.from_numpy(self.compiled_member_logits(a.numpy(), groups.numpy()))
        return self._sparse_member_logits(a, groups)

    def _sparse_member_logits(self, a: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """``member_logits`` in torch operations: row n of a sparse (N, G * hidden) matrix holds
        a_n in the block of its group, so one sparse product with the layer's weights stacked by
        group, (G * hidden, K / G), computes only the groups' members without copying any weights."""
        dtype = self._exact_dtype()
        w, b, scale = self._members(dtype)
        hidden = w.shape[0] // self.cfg.groups
        a = a.to(dtype) + 128 if self._int8 is not None else a
        n = len(a)
        cols = (groups[:, None] * hidden + torch.arange(hidden, device=a.device)).reshape(-1)
        rows = torch.arange(0, n * hidden + 1, hidden, device=a.device)
        with warnings.catch_warnings():  # PyTorch's note that sparse CSR is in beta, once a process: not for users
            warnings.simplefilter("ignore", UserWarning)
            blocks = torch.sparse_csr_tensor(rows, cols, a.reshape(-1), (n, w.shape[0]), check_invariants=False)
        return torch.floor((torch.sparse.mm(blocks, w) + b[groups]) * scale[groups]).to(torch.int32)

    def _members(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The output layer by group: weights (G * hidden, K / G), bias and 2**-shift (G, K / G)."""
        key = ("members", dtype)
        if key not in self._cache:
            w, b, scale = self._tensors(dtype)[1][self.cfg.layers]
            g, m = self.cfg.groups, self.cfg.members
            stacked = w.view(-1, g, m).transpose(0, 1).reshape(-1, m)
            self._cache[key] = (stacked, b.view(g, m), scale.view(g, m))
        return self._cache[key]

    def split(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices -> (group, member): the quotient and remainder of their place in the code order."""
        place = self.place[codes]
        return place // self.cfg.members, place % self.cfg.members

    def join(self, groups: torch.Tensor | np.ndarray, members: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Inverse of ``split`` (tensors, or on the CPU numpy arrays)."""
        order = self.order.numpy() if isinstance(groups, np.ndarray) else self.order
        return order[groups * self.cfg.members + members]


def float_state(cfg: PriorConfig, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The float parameters (and code order) that ``IntegerPrior.export`` turns into ``tensors``:
    its inverse, so that a shipped integer prior can be the starting point of another run."""
    t = {name: v.double() for name, v in tensors.items()}
    n_off = len(causal_offsets(cfg.radius))
    state = {
        "table": t["table"].view(n_off, cfg.codebook_size + 1, cfg.hidden) / 2**TABLE_BITS,
        "bias": t["bias"] / 2**TABLE_BITS,
    }
    modules = [f"hidden.{n}" for n in range(cfg.layers)] + ["out"] + (["group_out"] if cfg.groups > 1 else [])
    for module, name in zip(modules, output_names(cfg), strict=True):
        scale = 2.0 ** t[f"k{name}"]
        state[f"{module}.weight"] = t[f"w{name}"] / scale[:, None]
        state[f"{module}.bias"] = t[f"b{name}"] / (scale * 2**ACT_BITS)
    state = {name: v.float() for name, v in state.items()}
    if "order" in tensors:
        state["order"] = tensors["order"].long()
    return state


def output_names(cfg: PriorConfig) -> list[str]:
    """Names of the 1x1 layers' tensors in an exported prior: the hidden layers, the output, the group head."""
    return [str(n) for n in range(cfg.layers)] + ["_out"] + (["_group"] if cfg.groups > 1 else [])
