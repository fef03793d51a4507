"""Image quality on held-out test pairs: paired L1 / PSNR / SSIM (+ style distance), and FID / KID when Inception weights exist locally.

Paired metrics are computed on images in [0, 1]: L1 is the mean absolute error per pixel channel,
PSNR (dB, data range 1) is averaged per image, SSIM uses torchmetrics' 11x11 Gaussian window.
They need no weights, so they are the metrics every comparison reports; FID needs Inception
weights, which this product never downloads.

L1 and PSNR reward blur, so with a `gan.perceptual.StyleEmbedder` passed in (the caller owns its
ONNX session) the metrics also hold "style": the mean over images of the L2 distance between the
style embeddings of output and target (lower is better; 0 = same texture statistics), and on
request "style_fd": the Fréchet distance between the two sets of style embeddings, an offline
stand-in for FID (see gan.perceptual.frechet_distance on small sets).
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from gan.data import to_float, to_uint8
from gan.errors import GanError
from gan.perceptual import StyleEmbedder, frechet_distance, style_distance


def _reduced(*values: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Copies of these sums, summed across processes under torch.distributed."""
    values = tuple(v.clone() for v in values)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for value in values:
            torch.distributed.all_reduce(value)
    return values


class StyleMetrics:
    """Accumulates the style distance over batches and keeps the embeddings, for `style_fd`.

    The sums are reduced across processes under torch.distributed; the embeddings (and so
    `style_fd`) are this process's only.
    """

    def __init__(self, embedder: StyleEmbedder, device: str | torch.device = "cpu"):
        self.embedder = embedder
        self.style_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.images = torch.zeros((), dtype=torch.float64, device=device)
        self._fake_emb: list[torch.Tensor] = []
        self._real_emb: list[torch.Tensor] = []

    def update01(self, fake01: torch.Tensor, real01: torch.Tensor) -> None:
        """fake01, real01: (B, 3, H, W) in [0, 1]."""
        fake_emb, real_emb = self.embedder.embed(fake01), self.embedder.embed(real01)  # (B, 100) each
        self._fake_emb.append(fake_emb)
        self._real_emb.append(real_emb)
        self.style_sum += style_distance(fake_emb, real_emb).sum().to(self.style_sum.device)
        self.images += len(fake01)

    @torch.no_grad()
    def update(self, fake: torch.Tensor, real: torch.Tensor) -> None:
        """fake, real: (B, 3, H, W) in [-1, 1]."""
        self.update01(fake.float().add(1).div(2).clamp(0, 1), real.float().add(1).div(2).clamp(0, 1))

    @property
    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(outputs, targets) style embeddings seen so far, (N, 100) each."""
        if not self._fake_emb:
            raise GanError("no style embeddings: no images were scored")
        return torch.cat(self._fake_emb), torch.cat(self._real_emb)

    def compute(self, frechet: bool = False) -> dict[str, float]:
        """{"style"}, + "style_fd" when `frechet` (this process's images; needs 2 of them)."""
        style_sum, images = _reduced(self.style_sum, self.images)
        if images == 0:
            raise GanError("no test images to evaluate")
        out = {"style": float(style_sum / images)}
        if frechet:
            out["style_fd"] = frechet_distance(*self.embeddings)
        return out


class PairedMetrics:
    """Accumulates L1 / PSNR / SSIM (+ style distance with an embedder) over batches; under torch.distributed
    the states are summed across processes."""

    def __init__(self, device: str | torch.device = "cpu", embedder: StyleEmbedder | None = None):
        self.psnr = PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3)).to(device)  # mean of per-image PSNR
        self.ssim = StructuralSimilarityIndexMeasure(data_range=1.0).to(device)
        self.l1_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.count = torch.zeros((), dtype=torch.float64, device=device)
        self.style = StyleMetrics(embedder, device) if embedder is not None else None

    @torch.no_grad()
    def update(self, fake: torch.Tensor, real: torch.Tensor) -> None:
        """fake, real: (B, C, H, W) in [-1, 1]."""
        fake01 = fake.float().add(1).div(2).clamp(0, 1)
        real01 = real.float().add(1).div(2).clamp(0, 1)
        self.l1_sum += (fake01 - real01).abs().sum().double()
        self.count += fake01.numel()
        self.psnr.update(fake01, real01)
        self.ssim.update(fake01, real01)
        if self.style is not None:
            self.style.update01(fake01, real01)

    @property
    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(outputs, targets) style embeddings seen so far, (N, 100) each; needs an embedder."""
        if self.style is None:
            raise GanError("no style embeddings: these metrics were made without a StyleEmbedder")
        return self.style.embeddings

    def compute(self, frechet: bool = False) -> dict[str, float]:
        """{"l1", "psnr", "ssim"}, + "style" with an embedder, + "style_fd" when `frechet` (this process's images)."""
        l1_sum, count = _reduced(self.l1_sum, self.count)
        if count == 0:
            raise GanError("no test images to evaluate")
        out = {"l1": float(l1_sum / count), "psnr": float(self.psnr.compute()), "ssim": float(self.ssim.compute())}
        if self.style is not None:
            out.update(self.style.compute(frechet))
        elif frechet:
            raise GanError("style_fd needs a StyleEmbedder (gan.perceptual)")
        return out


@torch.no_grad()
def _accumulate(metrics, generator: nn.Module, source: torch.Tensor, target: torch.Tensor, batch_size: int,
                device: str | torch.device | None):
    """metrics.update(generator(source), target) batch by batch, in eval mode; returns metrics."""
    device = device or next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    try:
        for i in range(0, len(source), batch_size):
            src = to_float(source[i:i + batch_size].to(device))
            metrics.update(generator(src), to_float(target[i:i + batch_size].to(device)))
    finally:
        generator.train(was_training)
    return metrics


def score_pairs(generator: nn.Module, source: torch.Tensor, target: torch.Tensor, batch_size: int = 16,
                device: str | torch.device | None = None, embedder: StyleEmbedder | None = None) -> PairedMetrics:
    """generator(source) against target, accumulated but not reduced: for callers that also want the embeddings."""
    device = device or next(generator.parameters()).device
    return _accumulate(PairedMetrics(device, embedder), generator, source, target, batch_size, device)


def score_style(generator: nn.Module, source: torch.Tensor, target: torch.Tensor, embedder: StyleEmbedder,
                batch_size: int = 16, device: str | torch.device | None = None) -> StyleMetrics:
    """Only the style distance of generator(source) against target, for a training loop's evaluation callback.

    The same numbers as evaluate_pairs' "style" (same outputs, same [0, 1] conversion) without
    computing L1 / PSNR / SSIM again: the trainer's own evaluation has them already.
    """
    device = device or next(generator.parameters()).device
    return _accumulate(StyleMetrics(embedder, device), generator, source, target, batch_size, device)


class StyleScorer:
    """Adds "style" to a training loop's evaluation records by scoring its test pairs again.

    The trainer's own evaluation stays L1 / PSNR / SSIM (the zoo runs it thousands of times), so a
    caller that wants the style distance too scores the same test pairs with its embedder, outside
    the training clock; `seconds` is the time that added.
    """

    def __init__(self, generator: nn.Module, pairs, embedder: StyleEmbedder):
        self.generator, self.pairs, self.embedder = generator, pairs, embedder
        self.seconds = 0.0

    def score(self, record: dict) -> StyleMetrics:
        """Sets record["metrics"]["style"]; returns the accumulated metrics (with the embeddings)."""
        t0 = time.perf_counter()
        scored = score_style(self.generator, self.pairs.test_source, self.pairs.test_target, self.embedder)
        record["metrics"]["style"] = scored.compute()["style"]
        self.seconds += time.perf_counter() - t0
        return scored


def evaluate_pairs(generator: nn.Module, source: torch.Tensor, target: torch.Tensor, batch_size: int = 16,
                   device: str | torch.device | None = None, embedder: StyleEmbedder | None = None,
                   frechet: bool = False) -> dict[str, float]:
    """L1 / PSNR / SSIM of generator(source) against target; source/target uint8 (N, 3, H, W).

    With `embedder` also "style" (mean per-image style distance), and with `frechet` "style_fd"
    (the two sets' Fréchet style distance): the embedder is passed, never global, so training
    loops that do not ask for style pay nothing.
    """
    return score_pairs(generator, source, target, batch_size, device, embedder).compute(frechet)


@torch.no_grad()
def generate(generator: nn.Module, source: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """uint8 (N, 3, H, W) sources -> uint8 generated images, in eval mode."""
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    try:
        out = [to_uint8(generator(to_float(source[i:i + batch_size].to(device)))).cpu()
               for i in range(0, len(source), batch_size)]
    finally:
        generator.train(was_training)
    return torch.cat(out)


def inception_feature_extractor(weights_path: str | Path) -> nn.Module:
    """torchmetrics' FID Inception (2048-d pool features) built from a local weights file, never downloaded."""
    path = Path(weights_path)
    if not path.is_file():
        raise GanError(f"Inception weights file not found: {path}")
    if importlib.util.find_spec("torch_fidelity") is None:
        raise GanError("FID/KID with Inception weights need the torch-fidelity package "
                             "(pip install torch-fidelity); paired L1/PSNR/SSIM work without it")
    from torchmetrics.image.fid import NoTrainInceptionV3

    try:
        return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                  feature_extractor_weights_path=str(path))
    except Exception as e:  # a wrong or corrupt file: torch.load / load_state_dict errors
        raise GanError(f"cannot load Inception weights from {path}: {str(e).splitlines()[0]}") from None


@torch.no_grad()
def fid_kid(real: torch.Tensor, fake: torch.Tensor, inception_weights: str | Path | None = None,
            feature_extractor: nn.Module | None = None, batch_size: int = 32) -> dict[str, float]:
    """FID and KID between uint8 (N, 3, H, W) image sets.

    Features come from the Inception network in a local `inception_weights` file (torchmetrics'
    `feature_extractor_weights_path`) or from any `feature_extractor` module mapping uint8 images to
    (B, D) features. With neither, this refuses rather than download weights.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    if feature_extractor is None:
        if inception_weights is None:
            raise GanError("FID/KID need Inception weights: pass a local weights file (e.g. --inception "
                                 "pt_inception-2015-12-05.pth); nothing is downloaded")
        feature_extractor = inception_feature_extractor(inception_weights)
    if len(real) < 2 or len(fake) < 2:
        raise GanError(f"FID/KID need at least 2 images per set, got {len(real)} real and {len(fake)} fake")
    feature_extractor.eval()
    fid = FrechetInceptionDistance(feature=feature_extractor, input_img_size=tuple(real.shape[1:]))
    with warnings.catch_warnings():  # "will save all extracted features": a test set is small
        warnings.filterwarnings("ignore", message=".*save all extracted features.*")
        kid = KernelInceptionDistance(feature=feature_extractor, subsets=10,
                                      subset_size=min(50, len(real), len(fake)))
    for images, is_real in ((real, True), (fake, False)):
        for i in range(0, len(images), batch_size):
            batch = images[i:i + batch_size]
            fid.update(batch, real=is_real)
            kid.update(batch, real=is_real)
    kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid": float(kid_mean), "kid_std": float(kid_std)}
