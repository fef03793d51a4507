"""Pair folders, the in-memory sampler, metrics and the image grid."""

import pytest
import torch

from gan.data import PairedData, PairSampler, load_concept, paired_crops, read_manifest, to_float, to_uint8
from gan.io import read_json, write_json
from gan.metrics import PairedMetrics, fid_kid
from gan.viz import write_grid
from weightgen.errors import USER_ERRORS
from weightgen.pairs.synthetic import write_synthetic_pairs


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_synthetic_pairs(tmp_path_factory.mktemp("pairs"), ["Warm  Sepia", "cold blue"], n_train=6, n_test=3,
                                 image_size=16)


def test_load_by_id_text_and_all(pairs):
    manifest = read_manifest(pairs)
    ids = list(manifest["concepts"])
    assert ids[0].startswith("warm-sepia-") and len(ids[0].rsplit("-", 1)[1]) == 8
    by_text = PairedData.load(pairs, ["warm sepia"])  # case and spacing ignored
    by_id = PairedData.load(pairs, [ids[0]])
    assert torch.equal(by_text.train_target, by_id.train_target)
    both = PairedData.load(pairs)
    assert both.n_train == 12 and both.n_test == 6 and both.image_shape == (3, 16, 16)
    assert both.train_source.dtype == torch.uint8
    # the two concepts share sources but not edits
    assert torch.equal(both.concepts[0].train_source, both.concepts[1].train_source)
    assert not torch.equal(both.concepts[0].train_target, both.concepts[1].train_target)


def test_missing_concept_and_folder(pairs, tmp_path):
    with pytest.raises(USER_ERRORS, match="concept 'van gogh' is not in the pairs folder"):
        PairedData.load(pairs, ["van gogh"])
    with pytest.raises(USER_ERRORS, match="pairs folder not found"):
        PairedData.load(tmp_path / "nothing")


def test_corrupt_or_wrong_pairs_file(pairs, tmp_path):
    root = write_synthetic_pairs(tmp_path / "p", ["a"], n_train=2, n_test=1, image_size=8)
    cid = next(iter(read_manifest(root)["concepts"]))
    (root / cid / "pairs.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(USER_ERRORS, match="corrupt weights file .*pairs.safetensors"):
        load_concept(root, cid)
    from gan.io import save_tensors

    save_tensors(root / cid / "pairs.safetensors", {"train_source": torch.zeros(2, 3, 8, 8)})
    with pytest.raises(USER_ERRORS, match="lacks tensors"):
        load_concept(root, cid)
    manifest = read_json(root / "manifest.json")
    write_json(root / "manifest.json", {**manifest, "format": "something-else"})
    with pytest.raises(USER_ERRORS, match="is not a weightgen-pairs manifest"):
        read_manifest(root)


def test_sampler_is_seeded_and_flips_pairs_together(pairs):
    data = PairedData.load(pairs, ["cold blue"])
    a = [next(iter(data.sampler(4, seed=3))) for _ in range(1)][0]
    b = next(data.sampler(4, seed=3))
    assert torch.equal(a[0], b[0]) and a[0].shape == (4, 3, 16, 16)
    assert a[0].min() >= -1 and a[0].max() <= 1
    # without flips, every batch row is an exact (source, target) pair of the set
    src, tgt = next(data.sampler(16, seed=0, flip=False))  # batch > N: refilled by whole epochs
    src_set = to_float(data.train_source)
    for s, t in zip(src, tgt):
        i = int(((src_set - s).abs().flatten(1).sum(1)).argmin())
        assert torch.equal(to_float(data.train_target[i]), t)
    # with flips, a flipped source always comes with its flipped target
    for s, t in zip(*next(data.sampler(16, seed=1, flip=True))):
        i = int(torch.stack([(src_set - s).abs().flatten(1).sum(1), (src_set - s.flip(-1)).abs().flatten(1).sum(1)]
                            ).min(0).values.argmin())
        flipped = torch.equal(s, src_set[i].flip(-1)) and not torch.equal(s, src_set[i])
        expected = to_float(data.train_target[i])
        assert torch.equal(t, expected.flip(-1) if flipped else expected)


def test_crops_of_canvases_are_fresh_aligned_and_never_upsampled():
    g = torch.Generator().manual_seed(0)
    canvas = torch.randint(0, 256, (2, 3, 32, 32), generator=g, dtype=torch.uint8)
    sampler = PairSampler(canvas, 255 - canvas, batch_size=8, seed=0, size=(16, 16))
    first, second = next(sampler), next(sampler)
    for src, tgt in (first, second):
        assert src.shape == tgt.shape == (8, 3, 16, 16)
        assert torch.allclose(tgt, -src, atol=1e-5)  # the same window, resize and flip on source and target
    assert not torch.allclose(first[0], second[0])  # every batch draws new windows
    # a ramp canvas: windows land all over it, at every scale between 16 and 32 pixels
    ramp = torch.arange(32.0).view(1, 1, 1, 32).expand(200, 3, 32, 32) / 31 * 2 - 1
    src, _ = paired_crops(ramp, ramp, (16, 16), torch.Generator().manual_seed(1), flip=False)
    spans = src[:, 0, 0, -1] - src[:, 0, 0, 0]  # horizontal extent of each window, in ramp units
    assert spans.min() > 15 / 31 * 2 * 0.85 and spans.max() > 28 / 31 * 2  # from about the output size up to the canvas
    assert src[:, 0, 0, 0].min() < -0.9 and src[:, 0, 0, -1].max() > 0.9  # both edges reached


def test_uint8_float_round_trip():
    x = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    assert torch.equal(to_uint8(to_float(x)), x)


def test_paired_metrics_known_values():
    real = torch.rand(4, 3, 16, 16) * 2 - 1
    m = PairedMetrics()
    m.update(real, real)
    same = m.compute()
    assert same["l1"] == 0 and same["ssim"] == pytest.approx(1.0, abs=1e-4) and same["psnr"] > 60
    m = PairedMetrics()
    m.update((real + 0.2).clamp(-1, 1), real)  # +0.1 in [0, 1] units where not clipped
    shifted = m.compute()
    assert 0.05 < shifted["l1"] <= 0.1 + 1e-6 and 18 < shifted["psnr"] < 27 and shifted["ssim"] < 1
    with pytest.raises(USER_ERRORS, match="no test images"):
        PairedMetrics().compute()


def test_fid_needs_local_weights(tmp_path):
    imgs = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    with pytest.raises(USER_ERRORS, match="FID/KID need Inception weights"):
        fid_kid(imgs, imgs)
    with pytest.raises(USER_ERRORS, match="Inception weights file not found"):
        fid_kid(imgs, imgs, inception_weights=tmp_path / "missing.pth")


class _TinyFeatures(torch.nn.Module):
    """A stand-in for Inception: uint8 images -> 8 pooled colour/texture features."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        torch.nn.init.normal_(self.conv.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, x):
        return self.conv(x.float() / 255).relu().mean(dim=(2, 3))  # (B, 8)


def test_fid_kid_with_a_feature_extractor():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 128, (12, 3, 16, 16), generator=g, dtype=torch.uint8)
    b = torch.randint(0, 128, (12, 3, 16, 16), generator=g, dtype=torch.uint8)
    far = torch.randint(128, 256, (12, 3, 16, 16), generator=g, dtype=torch.uint8)
    near, distant = fid_kid(a, b, feature_extractor=_TinyFeatures()), fid_kid(a, far, feature_extractor=_TinyFeatures())
    assert set(near) == {"fid", "kid", "kid_std"}
    assert near["fid"] < distant["fid"] and near["kid"] < distant["kid"]


def test_grid_png(tmp_path):
    from PIL import Image

    imgs = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    path = write_grid(tmp_path / "g.png", {"source": imgs, "target": imgs, "lora": imgs}, scale=2)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (3 * 18 + 2, 14 + 3 * 18 + 2)
    with pytest.raises(USER_ERRORS, match="one shape"):
        write_grid(tmp_path / "bad.png", {"a": imgs, "b": imgs[:, :, :4]})
    assert not (tmp_path / "bad.png").exists()
