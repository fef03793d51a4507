"""Training the weight generator on a tiny synthetic zoo: loss, quality, resume, CLI, 2 ranks.

The zoo: 8 concepts whose true LoRA weights are a smooth (linear) function of their MiniLM
embedding, 2 noisy checkpoints each, written as real peft adapter folders + manifest and cut by
weightgen.chunks, so the test runs the same path as `weightgen chunks` -> `weightgen train`.
"""

import json
import os
import shutil
import subprocess

import pytest
import torch

from weightgen.chunks.adapters import write_adapter
from weightgen.chunks.dataset import build_chunk_dataset, load_chunk_dataset
from weightgen.errors import USER_ERRORS
from weightgen.generator.config import DiffusionConfig, GeneratorTrainConfig
from weightgen.generator.pipeline import WeightGenPipeline
from weightgen.generator.training import GeneratorTrainer, train_generator

CONCEPTS = ["van gogh style", "pencil sketch", "watercolor painting", "cyberpunk neon city",
            "old sepia photo", "pixel art", "oil painting of a cat", "winter snow scene"]
SHAPES = {
    "base_model.model.conv1.lora_A.weight": (4, 8, 3, 3),
    "base_model.model.conv1.lora_B.weight": (8, 4, 1, 1),
    "base_model.model.attn.to_q.lora_A.weight": (4, 16),
    "base_model.model.attn.to_q.lora_B.weight": (16, 4),
}
ADAPTER_CONFIG = {"peft_type": "LORA", "r": 4, "lora_alpha": 4, "target_modules": ["conv1", "to_q"]}
BLOCK = 64


@pytest.fixture(scope="module")
def encoder():
    from weightgen.text_encoders import load_text_encoder

    return load_text_encoder("minilm")


def true_weights(encoder) -> dict[str, dict[str, torch.Tensor]]:
    """Each concept's weights: a fixed mean + a fixed linear map of its text embedding."""
    g = torch.Generator().manual_seed(0)
    emb = encoder.embed(CONCEPTS)  # (C, 384)
    out = {}
    for key, shape in SHAPES.items():
        n = torch.Size(shape).numel()
        mean, proj = 0.5 * torch.randn(n, generator=g), 0.9 * torch.randn(384, n, generator=g)
        for c, text in enumerate(CONCEPTS):
            out.setdefault(text, {})[key] = (mean + emb[c] @ proj).view(shape)
    return out


@pytest.fixture(scope="module")
def zoo_chunks(tmp_path_factory, encoder):
    """(chunks_dir, {concept: true state dict}): a zoo of 2 noisy checkpoints per concept, chunked."""
    root = tmp_path_factory.mktemp("zoo")
    truth = true_weights(encoder)
    g = torch.Generator().manual_seed(1)
    concepts = {}
    for c, text in enumerate(CONCEPTS):
        cid = f"c{c}"
        ckpts = []
        for k in range(2):
            sd = {key: t + 0.05 * torch.randn(t.shape, generator=g) for key, t in truth[text].items()}
            write_adapter(sd, ADAPTER_CONFIG, root / "zoo" / cid / f"ckpt-{k}")
            ckpts.append({"path": f"{cid}/ckpt-{k}", "step": 100 * (k + 1), "metrics": {}})
        concepts[cid] = {"text": text, "split": "train", "checkpoints": ckpts}
    manifest = {"format": "weightgen-zoo", "version": 1, "base": "none", "base_fingerprint": "basefp",
                "lora": {}, "concepts": concepts}
    (root / "zoo" / "manifest.json").write_text(json.dumps(manifest))
    build_chunk_dataset(root / "zoo", root / "chunks", block_size=BLOCK, progress=False)
    return root / "chunks", truth


def tiny_config(**overrides) -> GeneratorTrainConfig:
    kwargs = dict(steps=6, batch_size=32, lr=1e-3, warmup_steps=20, model_size="tiny", cpu=True,
                  checkpoint_every=1000, log_every=1, ema_decay=0.99)
    return GeneratorTrainConfig(**{**kwargs, **overrides})


def distances(generated: list[dict], truth: dict, layout) -> torch.Tensor:
    gen = torch.stack([layout.to_blocks(sd) for sd in generated]).flatten(1)
    true = torch.stack([layout.to_blocks(truth[t]) for t in CONCEPTS]).flatten(1)
    return (gen - true).norm(dim=1)  # (C,)


@pytest.mark.slow
def test_tiny_generator_learns_the_zoo(zoo_chunks, encoder, tmp_path):
    chunks_dir, truth = zoo_chunks
    data = load_chunk_dataset(chunks_dir)
    seen = []

    def validate(step, generate):
        d = distances(generate(CONCEPTS), truth, data.layout)
        seen.append(step)
        return {"distance": float(d.mean())}

    config = tiny_config(steps=300, log_every=10, validate_every=150)
    trainer = GeneratorTrainer(config, data, tmp_path / "run", text_encoder=encoder, validate=validate)
    generator_dir = trainer.run_loop(progress=False)

    losses = [h["loss"] for h in trainer.history if "loss" in h]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:2]) / 2, losses
    assert seen == [150, 300]

    pipe = WeightGenPipeline.from_pretrained(generator_dir, text_encoder=encoder)
    generated = pipe.generate(CONCEPTS, seed=0)
    d_gen = distances(generated, truth, data.layout)
    d_zero = distances([{k: torch.zeros_like(v) for k, v in truth[t].items()} for t in CONCEPTS], truth, data.layout)
    mean_sd = {k: torch.stack([truth[t][k] for t in CONCEPTS]).mean(0) for k in SHAPES}
    d_mean = distances([mean_sd] * len(CONCEPTS), truth, data.layout)
    # beats zero-init on every concept, and the zoo mean on average: the text conditioning works
    assert (d_gen < d_zero).all(), (d_gen, d_zero)
    assert d_gen.mean() < 0.5 * d_mean.mean(), (d_gen.mean(), d_mean.mean())

    info = json.loads((generator_dir / "generator.json").read_text())
    assert info["format"] == "weightgen-generator" and info["step"] == 300
    assert info["text_encoder"]["name"] == "minilm" and info["text_encoder"]["dim"] == 384
    assert info["layout_fingerprint"] == data.layout.fingerprint and info["base_fingerprint"] == "basefp"
    assert info["training"]["model_size"] == "tiny" and info["weightgen_version"]
    # the loaded folder generates what the trainer's EMA weights generate
    same = trainer.pipeline().generate(CONCEPTS[:2], seed=0)
    torch.testing.assert_close(same[1], generated[1])


def test_resume_follows_the_uninterrupted_trajectory(zoo_chunks, encoder, tmp_path):
    data = load_chunk_dataset(zoo_chunks[0])
    straight = GeneratorTrainer(tiny_config(), data, tmp_path / "a", text_encoder=encoder)
    straight.run_loop(progress=False)

    interrupted = GeneratorTrainer(tiny_config(), data, tmp_path / "b", text_encoder=encoder)
    for _ in range(3):
        interrupted.run_step()
    interrupted.save_checkpoint()
    interrupted.run_step()  # lost work: the crash comes before the next checkpoint
    del interrupted

    resumed = GeneratorTrainer(tiny_config(), data, tmp_path / "b", text_encoder=encoder)
    assert resumed.resume() and resumed.step == 3
    resumed.run_loop(progress=False)
    for (name, a), b in zip(straight.unwrapped.state_dict().items(), resumed.unwrapped.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    for name in straight.ema.shadow:
        torch.testing.assert_close(straight.ema.shadow[name], resumed.ema.shadow[name], rtol=0, atol=0)
    state = json.loads((tmp_path / "b" / "training" / "state.json").read_text())
    assert state["step"] == 6 and state["checkpoint"] == "ckpt-0000006"
    assert len(state["checkpoints"]) <= 2 and all((tmp_path / "b" / "training" / c).is_dir() for c in state["checkpoints"])


def test_resume_refuses_other_settings_and_unasked_reuse(zoo_chunks, encoder, tmp_path):
    chunks_dir = zoo_chunks[0]
    train_generator(chunks_dir, tmp_path / "run", tiny_config(steps=2), progress=False, text_encoder=encoder)
    with pytest.raises(USER_ERRORS, match="already holds a training run"):
        train_generator(chunks_dir, tmp_path / "run", tiny_config(steps=4), progress=False, text_encoder=encoder)
    other = tiny_config(steps=4, diffusion=DiffusionConfig(prediction_type="epsilon"))
    with pytest.raises(USER_ERRORS, match="diffusion was"):
        train_generator(chunks_dir, tmp_path / "run", other, resume=True, progress=False, text_encoder=encoder)
    # more steps is a fine change
    out = train_generator(chunks_dir, tmp_path / "run", tiny_config(steps=4), resume=True, progress=False,
                          text_encoder=encoder)
    assert json.loads((out / "generator.json").read_text())["step"] == 4


def test_bad_train_config_is_refused():
    with pytest.raises(USER_ERRORS, match="model_size must be one of"):
        tiny_config(model_size="huge")
    with pytest.raises(USER_ERRORS, match="mixed_precision must be one of"):
        tiny_config(mixed_precision="fp8")
    with pytest.raises(USER_ERRORS, match="batch_size must be a positive integer, got 0"):
        tiny_config(batch_size=0)


def run_cli(args: list[str]) -> int:
    from weightgen.cli import main

    try:
        main(args)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def test_cli_train_then_init(zoo_chunks, tmp_path, capsys):
    chunks_dir = zoo_chunks[0]
    out = tmp_path / "run"
    assert run_cli(["train", "--chunks", str(chunks_dir), "--out", str(out), "--steps", "3", "--batch-size", "16",
                    "--model-size", "tiny", "--cpu", "--no-progress"]) == 0
    assert "generator written to" in capsys.readouterr().out
    assert (out / "generator" / "generator.json").is_file()
    adapter = tmp_path / "vg"
    assert run_cli(["init", "--generator", str(out), "--concept", "van gogh style", "--out", str(adapter)]) == 0
    printed = capsys.readouterr().out
    assert str(adapter) in printed and "generation" in printed
    from weightgen.chunks.adapters import read_adapter

    sd, config = read_adapter(adapter)
    assert config["r"] == 4 and set(sd) == set(SHAPES)
    assert run_cli(["train", "--chunks", str(chunks_dir), "--out", str(out), "--model-size", "medium"]) == 1
    assert "--model-size must be one of" in capsys.readouterr().err


@pytest.mark.slow
def test_two_cpu_ranks(zoo_chunks, tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` with --cpu: two gloo ranks, bf16 autocast, one run folder."""
    if shutil.which("accelerate") is None:
        pytest.skip("accelerate launcher not on PATH")
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "bf16", "--dynamo_backend", "no", "--main_process_port", "29517",
           "-m", "weightgen", "train", "--chunks", str(zoo_chunks[0]), "--out", str(out),
           "--steps", "4", "--batch-size", "8", "--model-size", "tiny", "--cpu", "--no-progress",
           "--mixed-precision", "bf16"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.loads((out / "training" / "state.json").read_text())
    assert state["num_processes"] == 2 and state["step"] == 4 and state["config"]["mixed_precision"] == "bf16"
    assert proc.stdout.count("generator written to") == 1  # only the main process reports
    assert (out / "generator" / "diffusion_pytorch_model.safetensors").is_file()
