"""Several concepts' LoRAs on one frozen base in one forward: the slots of a batched pass.

A batch of C slots is (C * B, ...), slot-major: rows c*B .. (c+1)*B - 1 belong to slot c. Every
layer of the generator but its LoRA layers treats samples independently (convs, instance norm,
attention), so the frozen base runs once on all C*B samples, and each LoRA layer adds slot c's
delta scaling * B_c(A_c(x_c)) to slot c's rows: the linear layers as two batched matmuls for all
slots, the convs either as two grouped convolutions (groups = C: one kernel for every slot, what a
GPU wants) or slot by slot (on the CPU, where oneDNN's grouped convolutions at these shapes cost
25-35% more than the plain ones, docs/zoo_speed.md). torch.func.vmap over stacked adapters lowers
a batched conv weight to the same grouped convolution; writing it out keeps the forward a plain module.

Each slot's LoRA is a dict of leaf tensors in peft's shapes, so a slot keeps its own optimizer,
step counts included, and can be refilled with a new concept while the others train on;
`export` copies one slot into a peft model, which `gan.lora.save_adapter` writes as usual.

Each slot's discriminator is a real `Discriminator` module; `multi_discriminate` either runs each
slot's module on its rows (CPU) or reads every slot's conv weights once per pass (so spectral norm
runs its power iteration in each slot's own module, as in a plain forward) and applies them as
grouped convolutions. `grouped=None` picks by device: grouped everywhere but on the CPU.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from peft import PeftModel
from peft.tuners.lora import Conv2d as LoraConv2d
from peft.tuners.lora import Linear as LoraLinear
from peft.tuners.lora import LoraLayer
from torch import nn

from gan.errors import GanError

SlotLora = dict[str, tuple[torch.Tensor, torch.Tensor]]  # peft layer name -> (lora_A weight, lora_B weight)


def use_grouped(grouped: bool | None, device: torch.device) -> bool:
    """Grouped convolutions over the slots, or slot by slot: as asked, else by device (slot by slot on the CPU)."""
    return device.type != "cpu" if grouped is None else grouped


def _to_slots(x: torch.Tensor, c: int) -> torch.Tensor:
    """(C*B, ch, ...) slot-major -> (B, C*ch, ...): each slot's channels side by side, for grouped convs."""
    n = x.shape[0] // c
    return x.reshape(c, n, *x.shape[1:]).transpose(0, 1).reshape(n, c * x.shape[1], *x.shape[2:])


def _from_slots(h: torch.Tensor, c: int) -> torch.Tensor:
    """(B, C*ch, ...) -> (C*B, ch, ...) slot-major: the inverse of `_to_slots`."""
    n = h.shape[0]
    return h.reshape(n, c, h.shape[1] // c, *h.shape[2:]).transpose(0, 1).reshape(c * n, h.shape[1] // c, *h.shape[2:])


class _SlotLoraLayer(nn.Module):
    """A peft LoRA layer's frozen base layer plus the LoRA deltas of the slots bound for this forward."""

    def __init__(self, base_layer: nn.Module, scaling: float):
        super().__init__()
        self.base_layer, self.scaling = base_layer, scaling
        self.bound: list[tuple[torch.Tensor, torch.Tensor]] = []  # per slot (A, B), set by MultiLoraGenerator
        self.grouped: bool | None = None  # set by MultiLoraGenerator

    def _slots(self, x: torch.Tensor) -> int:
        c = len(self.bound)
        if c == 0 or x.shape[0] % c:
            raise GanError(f"a batch of {x.shape[0]} rows cannot be split over {c} LoRA slots")
        return c


class _SlotLoraConv2d(_SlotLoraLayer):
    def __init__(self, layer: LoraConv2d, adapter: str):
        super().__init__(layer.get_base_layer(), layer.scaling[adapter])
        a, b = layer.lora_A[adapter], layer.lora_B[adapter]
        if a.dilation != (1, 1) or a.groups != 1 or b.groups != 1 or b.kernel_size != (1, 1) or b.bias is not None:
            raise GanError("the batched LoRA path supports plain conv LoRA (groups 1, no dilation, no LoRA bias)")
        self.stride, self.padding = a.stride, a.padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)  # (C*B, out, H', W'): the shared frozen conv, once for every slot
        c = self._slots(x)
        if use_grouped(self.grouped, x.device):
            a = torch.cat([a for a, _ in self.bound])  # (C*r, in, kh, kw)
            b = torch.cat([b for _, b in self.bound])  # (C*out, r, 1, 1)
            h = F.conv2d(_to_slots(x, c), a, None, self.stride, self.padding, groups=c)  # (B, C*r, H', W')
            delta = _from_slots(F.conv2d(h, b, groups=c), c)  # (C*B, out, H', W')
        else:
            delta = torch.cat([F.conv2d(F.conv2d(xc, a, None, self.stride, self.padding), b)
                               for xc, (a, b) in zip(x.chunk(c), self.bound)])  # (C*B, out, H', W')
        return out + delta * self.scaling


class _SlotLoraLinear(_SlotLoraLayer):
    def __init__(self, layer: LoraLinear, adapter: str):
        super().__init__(layer.get_base_layer(), layer.scaling[adapter])
        if layer.lora_B[adapter].bias is not None:
            raise GanError("the batched LoRA path supports LoRA without bias")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)  # (C*B, ..., out)
        c = self._slots(x)
        a = torch.stack([a for a, _ in self.bound])  # (C, r, in)
        b = torch.stack([b for _, b in self.bound])  # (C, out, r)
        h = torch.bmm(x.reshape(c, -1, x.shape[-1]), a.transpose(1, 2))  # (C, B*..., r)
        delta = torch.bmm(h, b.transpose(1, 2))  # (C, B*..., out)
        return out + delta.reshape(out.shape) * self.scaling


class MultiLoraGenerator(nn.Module):
    """The base generator of a peft model, its LoRA layers replaced by slot layers: forward(x, loras).

    `peft_model` (e.g. gan.lora.add_lora(base, settings)) is only read: its LoRA weights are every
    new slot's start (`new_lora`), which is what keeps all concepts in one aligned weight space.
    """

    def __init__(self, peft_model: PeftModel, grouped: bool | None = None):
        super().__init__()
        if len(peft_model.active_adapters) != 1:
            raise GanError(f"expected one active adapter, got {peft_model.active_adapters}")
        adapter = peft_model.active_adapters[0]
        self.model = copy.deepcopy(peft_model.get_base_model())
        self.layers: dict[str, _SlotLoraLayer] = {}
        self._init: SlotLora = {}
        for name, module in list(self.model.named_modules()):
            if not isinstance(module, LoraLayer):
                continue
            if not isinstance(module.lora_dropout[adapter], nn.Identity) or module.use_dora.get(adapter):
                raise GanError(f"the batched LoRA path supports plain LoRA without dropout; {name} has more")
            if isinstance(module, LoraConv2d):
                slot_layer: _SlotLoraLayer = _SlotLoraConv2d(module, adapter)
            elif isinstance(module, LoraLinear):
                slot_layer = _SlotLoraLinear(module, adapter)
            else:
                raise GanError(f"the batched LoRA path has no slot layer for {type(module).__name__} ({name})")
            slot_layer.grouped = grouped
            self._init[name] = (module.lora_A[adapter].weight.detach().clone(),
                                module.lora_B[adapter].weight.detach().clone())
            parent, _, child = name.rpartition(".")
            setattr(self.model.get_submodule(parent) if parent else self.model, child, slot_layer)
            self.layers[name] = slot_layer
        if not self.layers:
            raise GanError("the peft model has no LoRA layers")
        self.model.requires_grad_(False)
        self.adapter = adapter

    def new_lora(self, device: torch.device | str | None = None) -> SlotLora:
        """A fresh slot: trainable copies of the peft model's LoRA init."""
        return {name: tuple(t.to(device, copy=True).requires_grad_(True) for t in pair)  # type: ignore[misc]
                for name, pair in self._init.items()}

    def forward(self, x: torch.Tensor, loras: Sequence[SlotLora]) -> torch.Tensor:
        """x: (C*B, 3, H, W) slot-major for C = len(loras) -> (C*B, 3, H, W), slot c through its own LoRA."""
        for name, layer in self.layers.items():
            layer.bound = [lora[name] for lora in loras]
        try:
            return self.model(x)
        finally:
            for layer in self.layers.values():
                layer.bound = []

    @torch.no_grad()
    def export(self, lora: SlotLora, peft_model: PeftModel) -> PeftModel:
        """Copy one slot's LoRA into `peft_model` (a model like the one this was built from); returns it."""
        base = peft_model.get_base_model()
        for name, (a, b) in lora.items():
            layer = base.get_submodule(name)
            layer.lora_A[self.adapter].weight.copy_(a)
            layer.lora_B[self.adapter].weight.copy_(b)
        return peft_model


def multi_discriminate(discriminators: Sequence[nn.Module], source: torch.Tensor, image: torch.Tensor,
                       grouped: bool | None = None) -> torch.Tensor:
    """Each slot's patch logits from its own discriminator (gan.discriminator's `net`), in one pass.

    source, image: (C*B, 3, H, W) slot-major for C = len(discriminators) -> (C*B, 1, h, w).
    """
    c = len(discriminators)
    if source.shape != image.shape or source.dim() != 4 or source.shape[0] % c:
        raise GanError(f"{c} discriminators need (C*B, C, H, W) sources and images of one shape, "
                       f"got {tuple(source.shape)} and {tuple(image.shape)}")
    if not use_grouped(grouped, source.device):
        return torch.cat([d(s, i) for d, s, i in zip(discriminators, source.chunk(c), image.chunk(c))])
    h = _to_slots(torch.cat([source, image], dim=1), c)  # (B, C*6, H, W)
    for layers in zip(*(d.net for d in discriminators), strict=True):
        first = layers[0]
        if isinstance(first, nn.Conv2d) and first.padding_mode == "zeros":
            weight = torch.cat([layer.weight for layer in layers])  # each read runs that slot's spectral norm
            bias = torch.cat([layer.bias for layer in layers])
            h = F.conv2d(h, weight, bias, first.stride, first.padding, groups=c)  # (B, C*out, h, w)
        elif isinstance(first, nn.LeakyReLU):
            h = F.leaky_relu(h, first.negative_slope)
        elif isinstance(first, nn.InstanceNorm2d) and not first.affine and not first.track_running_stats:
            h = F.instance_norm(h, eps=first.eps)  # per sample and channel: the same on C*out channels
        else:
            raise GanError(f"multi_discriminate has no grouped form of {first}")
    return _from_slots(h, c)  # (C*B, 1, h, w)
