"""`weightgen init` and WeightGenPipeline on a random tiny generator over a real peft layout."""

import json
import shutil

import pytest
import torch
from torch import nn

from weightgen.chunks.adapters import read_adapter
from weightgen.chunks.layout import ChunkLayout
from weightgen.errors import USER_ERRORS
from weightgen.generator.config import MODEL_SIZES, DiffusionConfig
from weightgen.generator.diffusion import WeightDiffusion
from weightgen.generator.network import WeightUNet1D
from weightgen.generator.pipeline import WeightGenPipeline, concept_seed, write_adapters

BLOCK = 64
A, B, C = "van gogh style", "pencil sketch", "a   cyberpunk city at night"


class TinyBase(nn.Module):
    """A stand-in base network with one Conv2d and one Linear for peft to put LoRAs on."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.proj = nn.Linear(8, 8)

    def forward(self, x):
        return self.proj(self.conv1(x).mean((2, 3)))


@pytest.fixture(scope="module")
def peft_adapter(tmp_path_factory):
    """(state_dict, adapter_config) of a real peft adapter folder on TinyBase."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(TinyBase(), LoraConfig(r=4, lora_alpha=4, target_modules=["conv1", "proj"]))
    folder = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(folder)
    return read_adapter(folder)


@pytest.fixture(scope="module")
def encoder():
    from weightgen.text_encoders import load_text_encoder

    return load_text_encoder("minilm")


def make_pipeline(encoder, layout, nan: bool = False) -> WeightGenPipeline:
    torch.manual_seed(0)
    model = WeightUNet1D(**MODEL_SIZES["tiny"], block_size=BLOCK, text_dim=encoder.dim,
                         max_chunk_index=layout.n_blocks).eval()
    nn.init.normal_(model.conv_out.weight, std=0.1)  # untrained but not constant output
    if nan:
        with torch.no_grad():
            model.conv_out.bias[0] = float("nan")
    return WeightGenPipeline(model, encoder, layout, WeightDiffusion(DiffusionConfig()), {"step": 0})


@pytest.fixture(scope="module")
def generator_dir(tmp_path_factory, encoder, peft_adapter):
    sd, config = peft_adapter
    layout = ChunkLayout.from_state_dict(sd, BLOCK, config, base_fingerprint="basefp")
    layout.adapter_meta = {"base_fingerprint": "basefp", "base_weights_hash": "w1"}
    out = tmp_path_factory.mktemp("gen") / "generator"
    make_pipeline(encoder, layout).save_pretrained(out, extra_info={"step": 0})
    return out


@pytest.fixture(scope="module")
def pipe(generator_dir, encoder):
    return WeightGenPipeline.from_pretrained(generator_dir, text_encoder=encoder)


@pytest.fixture
def fast_encoder(monkeypatch, encoder):
    """CLI runs reuse the module's encoder instead of reloading MiniLM (loading is tested elsewhere)."""
    monkeypatch.setattr("weightgen.text_encoders.load_text_encoder_from_fingerprint",
                        lambda fingerprint, path=None, device="cpu": encoder)


def test_batched_init_equals_one_by_one(pipe):
    together = pipe.generate_blocks([A, B, C], seed=5)
    assert together.shape == (3, pipe.layout.n_blocks, BLOCK)
    for i, text in enumerate([A, B, C]):
        torch.testing.assert_close(pipe.generate_blocks([text], seed=5)[0], together[i], atol=1e-5, rtol=1e-5)
    reordered = pipe.generate_blocks([C, A, B], seed=5, concepts_per_batch=2)  # split over two calls
    torch.testing.assert_close(reordered[1], together[0], atol=1e-5, rtol=1e-5)
    # whitespace does not make a different concept (the same noise and text)
    torch.testing.assert_close(pipe.generate_blocks(["a cyberpunk city at night"], seed=5)[0], together[2],
                               atol=1e-5, rtol=1e-5)


def test_seed_concept_and_steps_change_the_weights(pipe):
    base = pipe.generate_blocks([A, B], seed=0)
    assert not torch.allclose(base[0], base[1])
    assert not torch.allclose(pipe.generate_blocks([A], seed=1)[0], base[0])
    ddim = pipe.generate_blocks([A], seed=0, steps=4)
    assert torch.isfinite(ddim).all() and not torch.allclose(ddim[0], base[0])
    assert concept_seed(0, A) != concept_seed(1, A) and concept_seed(0, A) == concept_seed(0, " van  gogh style ")


def test_written_adapter_loads_with_peft(pipe, tmp_path):
    from peft import PeftModel

    written, seconds = write_adapters(pipe, [A], tmp_path / "vg", seed=3)
    assert written == {A: tmp_path / "vg"} and seconds > 0
    expected = pipe.generate([A], seed=3)[0]
    model = PeftModel.from_pretrained(TinyBase(), tmp_path / "vg")
    loaded = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    assert len(loaded) == len(expected) == 4
    for key, value in expected.items():
        torch.testing.assert_close(loaded[key.replace(".weight", ".default.weight")], value)
    meta = json.loads((tmp_path / "vg" / "weightgen.json").read_text())
    assert meta["concept"] == A and meta["base_fingerprint"] == "basefp" and meta["generated_by"]["seed"] == 3


def test_many_concepts_get_one_folder_each(pipe, tmp_path):
    from prompts.identity import concept_id

    written, _ = write_adapters(pipe, [A, B, A], tmp_path / "many")
    assert list(written) == [A, B]
    index = json.loads((tmp_path / "many" / "index.json").read_text())
    assert index["adapters"] == {A: concept_id(A), B: concept_id(B)}
    for path in written.values():
        assert (path / "adapter_model.safetensors").is_file() and (path / "adapter_config.json").is_file()


# ---- the CLI and its refusals ------------------------------------------------------------------


def run_cli(args):
    from weightgen.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def test_cli_init_writes_and_reports(generator_dir, fast_encoder, tmp_path, capsys):
    concepts = tmp_path / "concepts.txt"
    concepts.write_text(f"# styles\n{A}\n\n{B}\n")
    out = tmp_path / "out"
    assert run_cli(["init", "--generator", generator_dir, "--concepts-file", concepts, "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "wrote 2 adapter(s)" in printed and "generation" in printed and str(out) in printed
    assert len(json.loads((out / "index.json").read_text())["adapters"]) == 2
    # an existing folder is refused, then replaced with --overwrite
    assert run_cli(["init", "--generator", generator_dir, "--concept", A, "--out", out]) == 1
    assert "already exists" in capsys.readouterr().err
    assert run_cli(["init", "--generator", generator_dir, "--concept", A, "--out", out, "--overwrite"]) == 0
    assert (out / "adapter_model.safetensors").is_file() and not (out / "index.json").exists()


def test_cli_refuses_empty_or_missing_concepts(generator_dir, tmp_path, capsys):
    out = tmp_path / "o"
    assert run_cli(["init", "--generator", generator_dir, "--concept", "   ", "--out", out]) == 1
    assert "empty concept text" in capsys.readouterr().err
    assert run_cli(["init", "--generator", generator_dir, "--out", out]) == 1
    assert "give a concept" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    assert run_cli(["init", "--generator", generator_dir, "--concepts-file", empty, "--out", out]) == 1
    assert "has no concepts" in capsys.readouterr().err
    assert not out.exists()


def test_cli_refuses_missing_generators(tmp_path, monkeypatch, capsys):
    assert run_cli(["init", "--generator", tmp_path / "nope", "--concept", A, "--out", tmp_path / "o"]) == 1
    assert "generator folder not found" in capsys.readouterr().err
    monkeypatch.setattr("weightgen.generator.pipeline.DEFAULT_GENERATOR_DIR", tmp_path / "assets" / "generator")
    assert run_cli(["init", "--concept", A, "--out", tmp_path / "o"]) == 1
    assert "default generator is not installed" in capsys.readouterr().err


def test_cli_refuses_layout_and_base_mismatch(generator_dir, fast_encoder, peft_adapter, tmp_path, capsys):
    sd, config = peft_adapter
    other = ChunkLayout.from_state_dict({k: v for k, v in sd.items() if "proj" in k}, 16, config)
    other.save(tmp_path / "other")
    out = tmp_path / "o"
    assert run_cli(["init", "--generator", generator_dir, "--concept", A, "--out", out, "--layout", tmp_path / "other"]) == 1
    err = capsys.readouterr().err
    assert "chunk layout mismatch" in err and other.fingerprint in err
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "weightgen.json").write_text(json.dumps({"fingerprint": "otherbase", "weights_hash": "w1"}))
    assert run_cli(["init", "--generator", generator_dir, "--concept", A, "--out", out, "--base", tmp_path / "base"]) == 1
    err = capsys.readouterr().err
    assert "base GAN mismatch" in err and "otherbase" in err and "basefp" in err
    # a generator folder whose layout.json was swapped for another layout
    swapped = tmp_path / "swapped"
    shutil.copytree(generator_dir, swapped)
    other.save(swapped)
    assert run_cli(["init", "--generator", swapped, "--concept", A, "--out", out]) == 1
    assert "was trained on chunk layout" in capsys.readouterr().err
    assert not out.exists()


def test_cli_refuses_missing_text_encoder(generator_dir, tmp_path, capsys):
    broken = tmp_path / "gen"
    shutil.copytree(generator_dir, broken)
    info = json.loads((broken / "generator.json").read_text())
    info["text_encoder"]["source"] = str(tmp_path / "moved-minilm")
    (broken / "generator.json").write_text(json.dumps(info))
    assert run_cli(["init", "--generator", broken, "--concept", A, "--out", tmp_path / "o"]) == 1
    assert "text encoder folder not found" in capsys.readouterr().err


def test_nan_weights_are_refused_and_never_written(encoder, peft_adapter, fast_encoder, tmp_path, capsys):
    sd, config = peft_adapter
    layout = ChunkLayout.from_state_dict(sd, BLOCK, config)
    nan_pipe = make_pipeline(encoder, layout, nan=True)
    with pytest.raises(USER_ERRORS, match="NaN/Inf"):
        write_adapters(nan_pipe, [A], tmp_path / "o")
    nan_pipe.save_pretrained(tmp_path / "gen")
    assert run_cli(["init", "--generator", tmp_path / "gen", "--concept", A, "--concept", B, "--out", tmp_path / "o"]) == 1
    assert "NaN/Inf" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
