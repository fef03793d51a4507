"""Generator variants: U-Net skips and residual output, both off by default (old checkpoints unchanged)."""

import copy
import json
from pathlib import Path

import pytest
import torch

from gan.base import load_model
from gan.config import GeneratorConfig, LoraSettings
from gan.generator import Generator
from gan.lora import add_lora, count_lora_params
from weightgen.errors import USER_ERRORS

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(base_channels=8, n_downsample=2, n_res_blocks=1, attention_heads=2, image_size=32)
VARIANTS = [dict(skips=False, residual=False), dict(skips=True, residual=False),
            dict(skips=False, residual=True), dict(skips=True, residual=True)]
IDS = ["plain", "skips", "residual", "both"]
# generator(x)[0, :, 10, 10:14] of TINY with defaults, torch.manual_seed(0), computed with the generator
# before skips/residual existed (gan/generator.py of the commit that added them, parent revision).
GOLDEN = [0.261126, 0.113965, 0.665156, 0.647588, -0.658357, -0.735476, -0.123503, -0.008053,
          -0.396385, 0.045958, -0.250183, 0.359255]


def _x(seed=1):
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _gen(seed=0, **kw):
    torch.manual_seed(seed)
    return Generator(**TINY, **kw)


@pytest.mark.parametrize("kw", VARIANTS, ids=IDS)
def test_forward_shape_and_range(kw):
    g = _gen(**kw)
    y = g(_x())
    assert y.shape == (2, 3, 32, 32)
    assert y.min() >= -1 and y.max() <= 1
    y.abs().mean().backward()  # the straight-through clamp keeps a gradient
    assert all(p.grad is not None for p in g.parameters())


def test_defaults_match_golden_slice():
    y = _gen()(_x())
    torch.testing.assert_close(y[0, :, 10, 10:14].flatten(), torch.tensor(GOLDEN), rtol=0, atol=2e-5)


def test_shipped_base_loads_unchanged():
    g = load_model(Generator, ROOT / "weightgen/assets/base/generator")  # config.json has no skips/residual
    assert g.config.skips is False and g.config.residual is False
    assert g.head.in_channels == g.config.base_channels


def test_skips_widen_up_convs_and_head():
    g = _gen(skips=True)
    # widths 8, 16, 32: up.0 takes the bottleneck (32) + down.1 (32), up.1 takes 16 + down.0 (16)
    assert [b.conv.in_channels for b in g.up] == [32 + 32, 16 + 16]
    assert g.head.in_channels == 2 * 8
    assert [n for n, _ in g.named_modules()] == [n for n, _ in _gen().named_modules()]  # same names


def test_residual_starts_as_identity():
    g = _gen(residual=True)
    assert torch.count_nonzero(g.head.weight) == 0 and torch.count_nonzero(g.head.bias) == 0  # zero-initialised
    x = _x()
    torch.testing.assert_close(g(x), x, rtol=0, atol=0)
    both = _gen(skips=True, residual=True)
    torch.testing.assert_close(both(x), x, rtol=0, atol=0)


@pytest.mark.parametrize("kw", VARIANTS, ids=IDS)
def test_lora_attaches_and_trains_a_step(kw):
    base = _gen(**kw)
    if kw["residual"]:  # a trained head (non-zero), so the LoRA'd layers below it get a gradient
        with torch.no_grad():
            base.head.weight.normal_(0, 0.01, generator=torch.Generator().manual_seed(3))
    model = add_lora(copy.deepcopy(base), LoraSettings(rank=2))
    assert count_lora_params(model) > 0
    inner = model.base_model.model
    assert all(hasattr(b.conv, "lora_A") for b in inner.up)  # the widened up convs are adapted too
    assert not hasattr(inner.head, "lora_A")
    x, target = _x(1), _x(2)
    torch.testing.assert_close(model(x), base(x), rtol=0, atol=0)  # fresh LoRA = the base
    before = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):  # B starts at zero, so A only moves from the second step
        opt.zero_grad()
        (model(x) - target).abs().mean().backward()
        opt.step()
    after = dict(model.named_parameters())
    assert any(not torch.equal(before[k], after[k]) for k in before if "lora_A" in k)
    assert any(not torch.equal(before[k], after[k]) for k in before if "lora_B" in k)
    with torch.no_grad():
        unmerged = model(x)
        merged = copy.deepcopy(model).merge_and_unload()(x)
    torch.testing.assert_close(merged, unmerged, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kw", VARIANTS[1:], ids=IDS[1:])
def test_save_load_round_trip(kw, tmp_path):
    g = _gen(**kw)
    with torch.no_grad():
        g.head.weight.normal_(0, 0.01, generator=torch.Generator().manual_seed(3))
    g.save_pretrained(str(tmp_path / "g"))
    loaded = load_model(Generator, tmp_path / "g")
    assert loaded.config.skips == kw["skips"] and loaded.config.residual == kw["residual"]
    x = _x()
    assert torch.equal(g(x), loaded(x))
    assert Generator.from_gan_config(GeneratorConfig(**TINY, **kw)).config.skips == kw["skips"]


@pytest.mark.parametrize("bad, message", [
    (dict(skips=1), "`skips` should be true or false"),
    (dict(residual="yes"), "`residual` should be true or false"),
    (dict(residual=True, out_channels=1), "`residual` needs in_channels == out_channels"),
])
def test_config_refuses_bad_values(bad, message):
    with pytest.raises(USER_ERRORS, match=message):
        GeneratorConfig(**bad)
    with pytest.raises(USER_ERRORS, match=message):
        Generator(**bad)


def test_config_dict_round_trip():
    cfg = GeneratorConfig(skips=True, residual=True)
    assert GeneratorConfig.from_dict(cfg.to_dict()) == cfg
    assert GeneratorConfig.from_dict({"image_size": 32}).skips is False  # old configs: defaults


def test_fingerprint_tells_variants_apart_and_keeps_old_checkpoints_matching():
    from gan.lora import fingerprint

    prints = {name: fingerprint(Generator(**GeneratorConfig(image_size=32, **kw).to_dict()))
              for name, kw in {"base": {}, "skips": {"skips": True}, "residual": {"residual": True}}.items()}
    assert len(set(prints.values())) == 3
    # the shipped base was fingerprinted before the options existed; it must still match its record
    shipped = Path(__file__).resolve().parent.parent / "weightgen" / "assets" / "base"
    recorded = json.loads((shipped / "weightgen.json").read_text())["fingerprint"]
    assert fingerprint(Generator.from_pretrained(str(shipped / "generator"))) == recorded
