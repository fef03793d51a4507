"""Text encoders behind one interface, on tiny randomly initialized open_clip / transformers CLIP models
(no pretrained weights can be downloaded here) plus the packaged MiniLM default."""

from __future__ import annotations

import gzip
import json
import warnings

import pytest
import torch

from weightgen.errors import USER_ERRORS
from weightgen.text_encoders import (
    TEXT_ENCODERS,
    CLIPEncoder,
    OpenCLIPEncoder,
    load_text_encoder,
    load_text_encoder_from_fingerprint,
)

CONTEXT = 16
TINY_OPEN_CLIP = {
    "embed_dim": 16,  # != text width 32: tokens must be projected to the pooled width
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": CONTEXT, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TEXTS = ["van gogh style", "a pencil sketch of a snowy mountain village", "sepia"]


def save_open_clip_folder(folder, seed: int = 0):
    import open_clip
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_name": "tiny", "model_cfg": TINY_OPEN_CLIP}))
    torch.manual_seed(seed)
    model = open_clip.create_model(f"local-dir:{folder}")  # random init: no weights in the folder yet
    save_file(model.state_dict(), str(folder / "open_clip_model.safetensors"))
    return folder


def clip_tokenizer_files(folder):
    """vocab.json + merges.txt for transformers' CLIPTokenizer, from open_clip's bundled BPE vocab."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m.split()) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({v: i for i, v in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def tiny_clip_text_config(**kw):
    return dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=CONTEXT, **kw)


@pytest.fixture(scope="module")
def open_clip_dir(tmp_path_factory):
    return save_open_clip_folder(tmp_path_factory.mktemp("oc") / "tiny")


@pytest.fixture(scope="module")
def open_clip_encoder(open_clip_dir):
    return load_text_encoder("open_clip", str(open_clip_dir))


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = tmp_path_factory.mktemp("clip") / "text"
    torch.manual_seed(0)
    CLIPTextModel(CLIPTextConfig(**tiny_clip_text_config())).save_pretrained(folder)
    clip_tokenizer_files(folder)
    return folder


@pytest.fixture(scope="module")
def clip_encoder(clip_dir):
    return load_text_encoder("clip", str(clip_dir))


def check_features(encoder, dim: int):
    feats = encoder.encode(TEXTS)
    b, length, d = feats.tokens.shape
    assert (b, d) == (len(TEXTS), dim) and encoder.dim == dim
    assert feats.mask.shape == (b, length) and feats.mask.dtype == torch.bool
    assert feats.pooled.shape == (b, dim)
    assert torch.allclose(feats.pooled.norm(dim=-1), torch.ones(b), atol=1e-5)
    assert torch.isfinite(feats.tokens).all()
    # deterministic, and a text's features do not depend on what it is batched with
    again = encoder.encode(TEXTS[::-1])
    assert torch.allclose(again.pooled.flip(0), feats.pooled, atol=1e-6)
    alone = encoder.encode([TEXTS[0]])
    assert torch.allclose(alone.pooled[0], feats.pooled[0], atol=1e-5)
    n = int(alone.mask.sum())
    assert torch.allclose(alone.tokens[0, :n], feats.tokens[0, :n], atol=1e-5)
    # pooled is the (normalized) feature of the last real token: the EOS position
    last = feats.mask.sum(1) - 1
    eos = feats.tokens[torch.arange(b), last]
    assert torch.allclose(torch.nn.functional.normalize(eos, dim=-1), feats.pooled, atol=1e-5)
    assert (feats.pooled[0] - feats.pooled[1]).abs().max() > 1e-3
    return feats


# ------------------------------------------------------------------------------------ open_clip


def test_open_clip_features(open_clip_encoder):
    feats = check_features(open_clip_encoder, dim=16)
    assert feats.tokens.shape[1] == CONTEXT  # open_clip pads to its context length
    n_words = [len(open_clip_encoder.tokenizer.encode(t)) for t in TEXTS]
    assert feats.mask.sum(1).tolist() == [n + 2 for n in n_words]  # SOT + words + EOT
    fp = open_clip_encoder.fingerprint
    assert fp["name"] == "open_clip" and fp["dim"] == 16 and fp["version"].startswith("tiny/")
    assert open_clip_encoder.model.visual is None  # image tower dropped


def test_open_clip_reload_is_identical_and_other_weights_differ(open_clip_dir, open_clip_encoder, tmp_path):
    again = load_text_encoder_from_fingerprint(open_clip_encoder.fingerprint)
    assert torch.equal(again.encode(TEXTS).tokens, open_clip_encoder.encode(TEXTS).tokens)
    other = save_open_clip_folder(tmp_path / "other", seed=1)
    assert load_text_encoder("open_clip", str(other)).fingerprint["version"] != open_clip_encoder.fingerprint["version"]
    with pytest.raises(USER_ERRORS, match="text encoder mismatch: .* version"):
        load_text_encoder_from_fingerprint(open_clip_encoder.fingerprint, path=str(other))


def test_open_clip_weights_file_with_registered_arch(open_clip_dir, open_clip_encoder, tmp_path):
    import open_clip

    (tmp_path / "weightgen-test-tiny.json").write_text(json.dumps(TINY_OPEN_CLIP))
    open_clip.add_model_config(tmp_path / "weightgen-test-tiny.json")
    weights = str(open_clip_dir / "open_clip_model.safetensors")
    enc = OpenCLIPEncoder(weights, model_name="weightgen-test-tiny")
    assert enc.fingerprint["model_name"] == "weightgen-test-tiny"
    assert torch.equal(enc.encode(TEXTS).pooled, open_clip_encoder.encode(TEXTS).pooled)


def test_open_clip_truncation_warns(open_clip_encoder):
    long = " ".join(["swirling starry night brushstrokes"] * 6)
    with pytest.warns(UserWarning, match="over the open_clip encoder's limit of 16"):
        feats = open_clip_encoder.encode([long])
    assert feats.mask.all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_clip_encoder.encode(["short"])


def test_open_clip_missing_or_bad_weights(open_clip_dir, tmp_path):
    with pytest.raises(USER_ERRORS, match="'open_clip' needs local weights"):
        load_text_encoder("open_clip")
    with pytest.raises(USER_ERRORS, match="open_clip weights not found: .*nope"):
        load_text_encoder("open_clip", str(tmp_path / "nope"))
    with pytest.raises(USER_ERRORS, match="cannot load open_clip .*laion2b_s34b_b79k"):  # a real tag, not cached
        load_text_encoder("open_clip", "laion2b_s34b_b79k", model_name="ViT-B-32")
    with pytest.raises(USER_ERRORS, match="pretrained tag"):
        load_text_encoder("open_clip", "laion2b_s34b_b79k-typo")
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights/open_clip_config.json").write_text((open_clip_dir / "open_clip_config.json").read_text())
    with pytest.raises(USER_ERRORS, match="noweights has no weights file"):
        load_text_encoder("open_clip", str(tmp_path / "noweights"))
    (tmp_path / "noconfig").mkdir()
    with pytest.raises(USER_ERRORS, match="noconfig lacks open_clip_config.json"):
        load_text_encoder("open_clip", str(tmp_path / "noconfig"))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(USER_ERRORS, match="corrupt weights file .*bad.safetensors"):
        OpenCLIPEncoder(str(bad), model_name="ViT-B-32")
    with pytest.raises(USER_ERRORS, match="unknown open_clip architecture 'ViT-Q-99'"):
        OpenCLIPEncoder(str(bad), model_name="ViT-Q-99")


# ------------------------------------------------------------------------------------ transformers CLIP


def test_clip_tokenizer_from_open_clip_vocab_matches_open_clip(clip_encoder):
    import open_clip

    tok = clip_encoder.tokenizer
    assert len(tok) == 49408
    text = "Van Gogh style painting, with swirls!"
    ids = tok(text)["input_ids"]
    assert ids == open_clip.tokenize([text], context_length=CONTEXT)[0, : len(ids)].tolist()


def test_clip_features(clip_encoder):
    feats = check_features(clip_encoder, dim=32)
    n_words = [len(clip_encoder.tokenizer(t)["input_ids"]) for t in TEXTS]
    assert feats.mask.sum(1).tolist() == n_words and feats.tokens.shape[1] == max(n_words)
    fp = clip_encoder.fingerprint
    assert fp["name"] == "clip" and fp["dim"] == 32 and fp["source"].endswith("text")
    again = load_text_encoder_from_fingerprint(fp)
    assert torch.equal(again.encode(TEXTS).tokens, clip_encoder.encode(TEXTS).tokens)


def test_clip_full_model_uses_projection(tmp_path):
    from transformers import CLIPConfig, CLIPModel

    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  image_size=32, patch_size=16)
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=tiny_clip_text_config(), vision_config=vision, projection_dim=8)).save_pretrained(
        tmp_path / "full"
    )
    clip_tokenizer_files(tmp_path / "full")
    enc = CLIPEncoder(str(tmp_path / "full"))
    assert enc.with_projection
    check_features(enc, dim=8)


def test_clip_missing_files(clip_dir, tmp_path):
    import shutil

    with pytest.raises(USER_ERRORS, match="'clip' needs a local folder"):
        load_text_encoder("clip")
    with pytest.raises(USER_ERRORS, match="text encoder folder not found: .*nope"):
        load_text_encoder("clip", str(tmp_path / "nope"))
    shutil.copytree(clip_dir, tmp_path / "c")
    for name in ("vocab.json", "tokenizer.json"):
        (tmp_path / "c" / name).unlink(missing_ok=True)
    with pytest.raises(USER_ERRORS, match="has no tokenizer files"):
        load_text_encoder("clip", str(tmp_path / "c"))
    (tmp_path / "c/model.safetensors").unlink()
    with pytest.raises(USER_ERRORS, match="has no weights"):
        load_text_encoder("clip", str(tmp_path / "c"))
    (tmp_path / "c/config.json").unlink()
    with pytest.raises(USER_ERRORS, match="lacks config.json"):
        load_text_encoder("clip", str(tmp_path / "c"))


# ------------------------------------------------------------------------------------ registry / default


def test_registry_and_minilm_default():
    assert set(TEXT_ENCODERS) == {"minilm", "open_clip", "clip"}
    with pytest.raises(USER_ERRORS, match="unknown text encoder 'bert'.*'clip', 'minilm', 'open_clip'"):
        load_text_encoder("bert")
    enc = load_text_encoder()
    assert enc.name == "minilm" and enc.embed(["van gogh style"]).shape == (1, 384)
    assert load_text_encoder_from_fingerprint(enc.fingerprint).fingerprint == enc.fingerprint
    with pytest.raises(USER_ERRORS, match="empty concept text"):
        enc.encode(["  "])
