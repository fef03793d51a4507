"""The generator network and its noise process, on tiny configs (no text encoder needed)."""

import pytest
import torch

from weightgen.errors import USER_ERRORS
from weightgen.generator.config import MODEL_SIZES, PREDICTION_TYPES, DiffusionConfig
from weightgen.generator.diffusion import WeightDiffusion
from weightgen.generator.network import WeightUNet1D

B, BLOCK, TEXT_DIM = 6, 64, 24


def tiny_unet(**overrides) -> WeightUNet1D:
    """A tiny UNet with a random (not zero) output conv, so outputs depend on every input."""
    torch.manual_seed(0)
    kwargs = dict(MODEL_SIZES["tiny"], block_size=BLOCK, text_dim=TEXT_DIM, max_chunk_index=32)
    model = WeightUNet1D(**{**kwargs, **overrides}).eval()
    torch.nn.init.normal_(model.conv_out.weight, std=0.1)
    return model


def inputs(n: int = B, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return dict(
        sample=torch.randn(n, 1, BLOCK, generator=g),
        timestep=torch.randint(0, 1000, (n,), generator=g),
        block_index=torch.randint(0, 32, (n,), generator=g),
        text_tokens=torch.randn(n, 5, TEXT_DIM, generator=g),
        text_mask=torch.tensor([[True] * 5] * (n - 1) + [[True, True, True, False, False]]),
    )


@torch.no_grad()
def test_output_shape_and_save_load_round_trip(tmp_path):
    model = tiny_unet()
    x = inputs()
    out = model(**x)
    assert out.shape == (B, 1, BLOCK) and out.abs().sum() > 0
    model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = WeightUNet1D.from_pretrained(tmp_path).eval()
    assert list(loaded.config.channels) == list(model.config.channels) and loaded.config.block_size == BLOCK
    torch.testing.assert_close(loaded(**x), out)


@torch.no_grad()
def test_chunk_index_embedding_distinguishes_indices():
    model = tiny_unet()
    x = inputs(2)
    x["sample"] = x["sample"][:1].repeat(2, 1, 1)  # same noisy block, same t, same text
    x["timestep"] = torch.tensor([500, 500])
    x["text_tokens"] = x["text_tokens"][:1].repeat(2, 1, 1)
    x["text_mask"] = torch.ones(2, 5, dtype=torch.bool)
    x["block_index"] = torch.tensor([3, 3])
    same = model(**x)
    torch.testing.assert_close(same[0], same[1])
    x["block_index"] = torch.tensor([3, 4])
    diff = model(**x)
    assert (diff[0] - diff[1]).abs().max() > 1e-4


@torch.no_grad()
def test_shared_text_rows_equal_per_block_text_and_padding_is_ignored():
    """text_index lets all blocks of a concept share one row of text features (how init batches)."""
    model = tiny_unet()
    x = inputs()
    per_block = model(**x)
    rows = torch.tensor([0, 1, 1, 0, 2, 2])
    x2 = dict(x, text_tokens=x["text_tokens"][:3], text_mask=x["text_mask"][:3])
    x2["text_tokens"][2] = x["text_tokens"][-1]  # row 2 carries the padded text
    x2["text_mask"][2] = x["text_mask"][-1]
    shared = model(**x2, text_index=rows)
    expanded = model(**dict(x, text_tokens=x2["text_tokens"][rows], text_mask=x2["text_mask"][rows]))
    torch.testing.assert_close(shared, expanded, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(shared, per_block)
    # features under a masked-out token must not matter
    x3 = dict(x2, text_tokens=x2["text_tokens"].clone())
    x3["text_tokens"][2, 3:] = 100.0
    torch.testing.assert_close(model(**x3, text_index=rows), shared)


PLAIN = dict(index_table=False, index_template=False, chunk_text_rank=0)


@torch.no_grad()
def test_paper_plain_layout_has_no_per_chunk_memory(tmp_path):
    plain = tiny_unet(**PLAIN)
    names = {n for n, _ in plain.named_parameters()}
    assert not any(n.startswith("chunk_") for n in names)
    full = tiny_unet()
    extra = {n for n, _ in full.named_parameters()} - names
    assert extra == {"chunk_table.weight", "chunk_template", "chunk_text_proj.weight", "chunk_text_proj.bias", "chunk_basis"}
    plain.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith("chunk_")})
    x = inputs()
    torch.testing.assert_close(plain(**x), full(**x))  # the memory starts at zero: same function
    plain.save_pretrained(tmp_path)
    assert WeightUNet1D.from_pretrained(tmp_path).chunk_basis is None


@torch.no_grad()
def test_per_chunk_linear_head_follows_index_and_text():
    model = tiny_unet()
    torch.nn.init.zeros_(model.conv_out.weight)
    torch.nn.init.normal_(model.chunk_basis)
    torch.nn.init.normal_(model.chunk_template)
    x = inputs()
    out = model(**x)
    coef = model.chunk_text_proj(x["text_tokens"][:-1].mean(1))  # unpadded rows: plain mean
    expected = model.chunk_template[x["block_index"][:-1]] + torch.einsum(
        "br,brk->bk", coef, model.chunk_basis[x["block_index"][:-1]])[:, None]
    torch.testing.assert_close(out[:-1], expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(block_size=60), "divisible"),
        (dict(channels=(16, 30, 32)), "norm_groups"),
        (dict(attention_stages=(True,)), "one flag per stage"),
        (dict(num_heads=3), "divisible by num_heads"),
        (dict(chunk_text_rank=-1), "chunk_text_rank"),
    ],
)
def test_bad_config_is_refused_with_the_value(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_unet(**overrides)


def test_chunk_index_out_of_range_is_refused():
    x = inputs()
    x["block_index"][0] = 32
    with pytest.raises(ValueError, match="chunk index out of range"):
        tiny_unet()(**x)


# ---- the noise process ---------------------------------------------------------------------


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_split_output_recovers_x0_and_noise_from_the_true_target(prediction_type):
    diff = WeightDiffusion(DiffusionConfig(prediction_type=prediction_type))
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 1, 16, generator=g), torch.randn(4, 1, 16, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    x_t = diff.train_scheduler.add_noise(x0, noise, t)
    x0_hat, eps_hat = diff.split_output(diff._target(x0, noise, t), x_t, t)
    torch.testing.assert_close(x0_hat, x0, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(eps_hat, noise, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_training_loss_backpropagates(prediction_type):
    model = tiny_unet()
    diff = WeightDiffusion(DiffusionConfig(prediction_type=prediction_type, input_noise=1e-3))
    x = inputs()
    kwargs = {k: x[k] for k in ("block_index", "text_tokens", "text_mask")}
    losses = diff.training_losses(model, x["sample"], kwargs, generator=torch.Generator().manual_seed(0))
    assert set(losses) == {"loss", "mse_x0"} and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert model.conv_in.weight.grad is not None and model.conv_in.weight.grad.abs().sum() > 0


def test_ddim_sampler_matches_diffusers_ddim_scheduler():
    """Our DDIM loop (which can start at any t_start) equals DDIMScheduler.step from T-1."""
    model = tiny_unet()
    diff = WeightDiffusion(DiffusionConfig(prediction_type="epsilon"))
    x = inputs()
    kwargs = {k: x[k] for k in ("block_index", "text_tokens", "text_mask")}
    noise = torch.randn(B, 1, BLOCK, generator=torch.Generator().manual_seed(3))
    ours = diff.sample(model, noise, kwargs, steps=4)
    sched = diff.sample_scheduler
    sched.set_timesteps(4)
    assert [int(t) for t in sched.timesteps] == diff.timesteps(4)
    xt = noise
    with torch.no_grad():
        for t in sched.timesteps:
            xt = sched.step(model(xt, t, **kwargs), t, xt).prev_sample
    torch.testing.assert_close(ours, xt, atol=1e-4, rtol=1e-4)


def test_single_step_sample_is_one_call_reading_x0():
    model = tiny_unet()
    diff = WeightDiffusion(DiffusionConfig(prediction_type="sample"))
    x = inputs()
    kwargs = {k: x[k] for k in ("block_index", "text_tokens", "text_mask")}
    noise = torch.randn(B, 1, BLOCK, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        direct = model(noise, 999, **kwargs)
        torch.testing.assert_close(diff.sample(model, noise, kwargs, steps=1), direct)
        torch.testing.assert_close(diff.sample(model, noise, kwargs, steps=1, t_start=400), model(noise, 400, **kwargs))
    assert diff.timesteps(3, t_start=299) == [299, 199, 99]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(prediction_type="x0"), "prediction_type must be one of"),
        (dict(beta_start=0.1, beta_end=0.01), "beta_start < beta_end"),
        (dict(beta_schedule="cosine"), "beta_schedule must be one of"),
        (dict(default_t_start=1000), "default_t_start"),
        (dict(input_noise=-1.0), "input_noise"),
    ],
)
def test_bad_diffusion_config_is_refused(kwargs, match):
    with pytest.raises(USER_ERRORS, match=match):
        DiffusionConfig(**kwargs)


@pytest.mark.parametrize("steps, t_start, match", [(0, None, "positive"), (1, 1000, "t_start"), (5, 3, "more than")])
def test_bad_sampling_arguments_are_refused(steps, t_start, match):
    with pytest.raises(ValueError, match=match):
        WeightDiffusion(DiffusionConfig()).timesteps(steps, t_start)
