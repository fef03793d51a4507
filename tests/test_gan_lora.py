"""LoRA through peft: sizes, fixed init, standard adapter folders, refusals of the wrong base."""

import copy
import json

import pytest
import torch
from peft import PeftModel

from gan.config import LoraSettings, default_rank_pattern
from gan.generator import Generator
from gan.lora import (
    add_lora,
    count_lora_params,
    fingerprint,
    load_adapter,
    save_adapter,
    weights_hash,
)
from weightgen.errors import USER_ERRORS

TINY = dict(base_channels=8, n_downsample=2, n_res_blocks=1, attention_heads=2, image_size=32)


@pytest.fixture
def base():
    torch.manual_seed(0)
    return Generator(**TINY)


def _x(seed=1):
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _trained_adapter(base, settings=None):
    """A LoRA with non-zero B (as after training), so it changes the output."""
    model = add_lora(copy.deepcopy(base), settings or LoraSettings(rank=2))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(len(name)))
    return model


def test_default_lora_is_one_to_three_percent_of_g():
    g = Generator()
    n_g = sum(p.numel() for p in g.parameters())
    model = add_lora(g, LoraSettings())
    n_lora = count_lora_params(model)
    assert 0.01 <= n_lora / n_g <= 0.03, (n_lora, n_g)
    assert n_lora == sum(p.numel() for p in model.parameters() if p.requires_grad)  # base frozen
    # rank_pattern reached the ResNet convs; the others keep `rank`
    assert model.base_model.model.res[0].conv1.r["default"] == 2
    assert model.base_model.model.attn.to_q.r["default"] == 4
    assert not hasattr(model.base_model.model.stem, "lora_A")


def test_rank_pattern_scales_with_rank():
    assert default_rank_pattern(8) == {r"res\.\d+\.conv[12]": 4}
    assert default_rank_pattern(1) == {r"res\.\d+\.conv[12]": 1}


def test_fresh_lora_equals_base_and_init_is_seeded(base):
    x = _x()
    expected = base(x)
    a = add_lora(copy.deepcopy(base), LoraSettings(rank=2))
    torch.manual_seed(123)  # the caller's RNG state must not matter ...
    b = add_lora(copy.deepcopy(base), LoraSettings(rank=2))
    c = add_lora(copy.deepcopy(base), LoraSettings(rank=2, init_seed=1))
    torch.testing.assert_close(a(x), expected, rtol=0, atol=0)  # zero B: starts at the base
    sa, sb, sc = (dict((k, v) for k, v in m.named_parameters() if "lora_" in k) for m in (a, b, c))
    assert sa.keys() == sb.keys() and len(sa) > 0
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # ... only init_seed does
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if "lora_A" in k)


def test_rng_of_caller_untouched(base):
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    add_lora(copy.deepcopy(base), LoraSettings(rank=2))
    assert torch.equal(torch.rand(3), expected)


def test_adapter_round_trip_with_plain_peft(base, tmp_path):
    x = _x()
    model = _trained_adapter(base)
    out = model(x)
    assert not torch.allclose(out, base(x))
    save_adapter(model, tmp_path / "a", {"concept": "c1", "step": 5})
    for name in ("adapter_config.json", "adapter_model.safetensors", "weightgen.json"):
        assert (tmp_path / "a" / name).is_file()
    # No code of ours: peft alone loads it onto a fresh copy of the base.
    plain = PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path / "a"))
    torch.testing.assert_close(plain(x), out, rtol=0, atol=0)
    ours = load_adapter(copy.deepcopy(base), tmp_path / "a")
    torch.testing.assert_close(ours(x), out, rtol=0, atol=0)
    meta = json.loads((tmp_path / "a" / "weightgen.json").read_text())
    assert meta["base_fingerprint"] == fingerprint(base) and meta["concept"] == "c1"
    assert not any(p.requires_grad for p in ours.parameters())
    trainable = load_adapter(copy.deepcopy(base), tmp_path / "a", is_trainable=True)
    assert count_lora_params(trainable) == sum(p.numel() for p in trainable.parameters() if p.requires_grad) > 0


def test_merge_gives_identical_outputs(base):
    x = _x()
    model = _trained_adapter(base)
    out = model(x)
    merged = model.merge_and_unload()
    assert isinstance(merged, Generator)
    torch.testing.assert_close(merged(x), out, rtol=1e-5, atol=1e-5)


def test_fingerprint_is_architecture_not_weights(base):
    other_weights = Generator(**TINY)
    assert fingerprint(other_weights) == fingerprint(base)
    assert weights_hash(other_weights) != weights_hash(base)
    assert fingerprint(Generator(**{**TINY, "base_channels": 16})) != fingerprint(base)
    wrapped = add_lora(copy.deepcopy(base), LoraSettings(rank=2))
    assert fingerprint(wrapped) == fingerprint(base) and weights_hash(wrapped) == weights_hash(base)


def test_adapter_for_other_architecture_refused(base, tmp_path):
    save_adapter(_trained_adapter(base), tmp_path / "a")
    other = Generator(**{**TINY, "base_channels": 16})
    with pytest.raises(USER_ERRORS, match=r"was trained for base [0-9a-f]{16}, this base is [0-9a-f]{16}"):
        load_adapter(other, tmp_path / "a")
    # Without the sidecar (a plain peft folder), the shape mismatch still becomes one clear line.
    (tmp_path / "a" / "weightgen.json").unlink()
    with pytest.raises(USER_ERRORS, match="does not fit this base generator: .*size mismatch"):
        load_adapter(Generator(**{**TINY, "base_channels": 16}), tmp_path / "a")


def test_adapter_for_other_base_weights_refused(base, tmp_path):
    save_adapter(_trained_adapter(base), tmp_path / "a")
    retrained = Generator(**TINY)  # same architecture, other weights
    with pytest.raises(USER_ERRORS, match="trained for base weights"):
        load_adapter(retrained, tmp_path / "a")
    assert isinstance(load_adapter(Generator(**TINY), tmp_path / "a", check_weights=False), PeftModel)


def test_missing_corrupt_and_partial_adapters(base, tmp_path):
    with pytest.raises(USER_ERRORS, match="adapter folder not found"):
        load_adapter(copy.deepcopy(base), tmp_path / "nope")
    save_adapter(_trained_adapter(base), tmp_path / "a")
    weights = tmp_path / "a" / "adapter_model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(b"not safetensors at all")
    with pytest.raises(USER_ERRORS, match="corrupt weights file"):
        load_adapter(copy.deepcopy(base), tmp_path / "a")
    # A partial adapter (one tensor dropped) must not load silently.
    from safetensors.torch import load, save

    tensors = load(good)
    tensors.pop(sorted(tensors)[0])
    weights.write_bytes(save(tensors))
    with pytest.raises(USER_ERRORS, match="1 missing tensors"):
        load_adapter(copy.deepcopy(base), tmp_path / "a")
    weights.unlink()
    with pytest.raises(USER_ERRORS, match="has no adapter_model.safetensors"):
        load_adapter(copy.deepcopy(base), tmp_path / "a")


def test_unknown_target_module_is_clear(base):
    with pytest.raises(USER_ERRORS, match="cannot put LoRA on this generator"):
        add_lora(base, LoraSettings(target_modules=("no_such_layer",)))


def test_save_refuses_existing_folder(base, tmp_path):
    model = _trained_adapter(base)
    save_adapter(model, tmp_path / "a")
    with pytest.raises(USER_ERRORS, match="already exists"):
        save_adapter(model, tmp_path / "a")
    save_adapter(model, tmp_path / "a", overwrite=True)
