"""The procedural editor: the op bank, determinism, smoothness in the text, compositions, bad input."""

import warnings

import numpy as np
import pytest
import torch

from weightgen.errors import USER_ERRORS
from weightgen.pairs.editors import REGISTRY, load_editor
from weightgen.pairs.editors.context import OpContext
from weightgen.pairs.editors.ops import OPS
from weightgen.pairs.editors.procedural import ProceduralConfig, ProceduralEditor
from weightgen.pairs.similarity import BUILTIN_PARAPHRASES, similarity_check
from weightgen.pairs.sources import SourceConfig, build_sources


@pytest.fixture(scope="module")
def encoder():
    from weightgen.text_encoders import load_text_encoder

    return load_text_encoder("minilm")


@pytest.fixture(scope="module")
def editor(encoder):
    return ProceduralEditor(ProceduralConfig(), encoder=encoder)


@pytest.fixture(scope="module")
def photos():
    """16 real 32x32 crops (bundled photos), uint8 (N, 3, H, W)."""
    s = build_sources(SourceConfig(image_size=32, n_train=12, n_test=4, seed=0))
    return torch.cat([s.train, s.test])


def test_registry_lists_the_editors():
    assert set(REGISTRY) == {"bank", "procedural", "instruct-pix2pix"}
    with pytest.raises(USER_ERRORS, match="unknown editor 'nope'"):
        load_editor("nope")


def test_bank_has_many_real_ops_each_changing_the_image(photos):
    assert len(OPS) >= 24
    x = photos.float() / 255
    ctx = OpContext(source=x, seed=0)
    for name, op in OPS.items():
        assert op.description and "\n" not in op.description, name
        assert all(p.low < p.high for p in op.params), name
        mid = {p.name: (p.low + p.high) / 2 for p in op.params}
        y = op.fn(x, mid, ctx)
        assert y.shape == x.shape and torch.isfinite(y).all(), name
        assert (y.clamp(0, 1) - x).abs().mean() > 0.01, f"{name} leaves the image unchanged"
        assert torch.equal(y, op.fn(x, mid, OpContext(source=x, seed=0))), f"{name} is not deterministic"


def test_same_seed_same_bytes_and_kind_preserved(encoder, editor, photos):
    a = editor.edit(photos, "in winter snow", seed=3)
    b = ProceduralEditor(ProceduralConfig(), encoder=encoder).edit(photos, "in winter snow", seed=3)
    assert a.dtype == torch.uint8 and a.shape == photos.shape
    assert a.numpy().tobytes() == b.numpy().tobytes()
    assert not torch.equal(a, editor.edit(photos, "in winter snow", seed=4))  # snowflakes move
    f = editor.edit(photos.float() / 255, "in winter snow", seed=3)  # float in, float out
    assert f.dtype == torch.float32 and (f * 255 - a.float()).abs().max() <= 0.51
    n = editor.edit(photos.numpy(), "in winter snow", seed=3)  # numpy works too
    assert torch.equal(n, a)


def test_paraphrases_edit_alike_unrelated_concepts_do_not(editor, photos):
    groups = BUILTIN_PARAPHRASES[::3]  # 8 concepts x 2 paraphrases
    report = similarity_check(editor, photos[:8], groups, unrelated_per_concept=2)
    assert report.unrelated_distance > 0.1
    assert report.ratio < 1 / 3, report


def test_composition_blends_its_parts(editor):
    main = lambda text: max(editor.plan(text), key=lambda s: s.weight).op  # noqa: E731
    for a, b in [("van gogh style", "at night"), ("pencil sketch", "in winter snow")]:
        ops = {s.op: s.weight for s in editor.plan(f"{a}, {b}")}
        assert main(a) in ops and main(b) in ops, (a, b, ops)
        assert min(ops[main(a)], ops[main(b)]) > 0.3, ops


def test_plan_weights_move_continuously_along_the_text_embedding(editor):
    e1, e2 = editor.embed("watercolor painting"), editor.embed("at night")
    previous = None
    for t in torch.linspace(0, 1, 41):
        e = torch.nn.functional.normalize((1 - t) * e1 + t * e2, dim=0)
        w = torch.zeros(len(editor.op_names), dtype=torch.float64)
        for step in editor.plan_from_embedding(e):
            w[editor.op_names.index(step.op)] = step.weight
        if previous is not None:
            assert (w - previous).abs().max() < 0.35  # no op jumps in or out at full strength
        previous = w


def test_bad_concepts(editor, photos):
    for bad in ["", "   \n\t"]:
        with pytest.raises(USER_ERRORS, match="empty concept"):
            editor.edit(photos, bad)
    long_text = " ".join(["a van gogh painting of a starry night over a quiet village"] * 40)
    with pytest.warns(UserWarning, match="truncated"):
        out = editor.edit(photos[:2], long_text)
    assert out.shape == photos[:2].shape
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tokyo = editor.edit(photos[:2], "東京の夜, ネオン")
    assert tokyo.shape == photos[:2].shape and not torch.equal(tokyo, photos[:2])
    with pytest.raises(USER_ERRORS, match=r"shape \(N, 3, H, W\)"):
        editor.edit(np.zeros((2, 32, 32, 3), np.uint8), "at night")


def test_config_rejects_bad_values():
    with pytest.raises(USER_ERRORS, match="top_k"):
        ProceduralConfig(top_k=0)
    with pytest.raises(USER_ERRORS, match="sparsity"):
        ProceduralConfig(sparsity=-1)
