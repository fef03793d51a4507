"""The procedural editor's bank of image operations, each a real, batched image transform.

Every op maps a float batch (N, 3, H, W) in [0, 1] to one of the same shape, takes continuous
parameters (scalars shared by the batch) and draws any pattern (grain, snowflakes, paper) from
`OpContext.pattern`, which is seeded per editor call, not per image: the same concept and seed
always give the same bytes, and a pix2pix GAN sees one consistent mapping to learn.
Ops are spatially local (small convolutions, pooling, per-pixel colour maps) for the same reason.

`OPS` is ordered: the editor applies the chosen ops in this order (structure -> colour ->
overlays), so a blend of a painting style and a lighting change paints first and relights after.
The descriptions are what concept texts are matched against: write them as a user would describe
the look, not the algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from weightgen.pairs.editors import style_ops as S
from weightgen.pairs.editors import tone_ops as T
from weightgen.pairs.editors.context import OpContext

Tensor = torch.Tensor


@dataclass(frozen=True)
class Param:
    """A continuous op parameter; the editor maps the concept embedding into [low, high]."""

    name: str
    low: float
    high: float


@dataclass(frozen=True)
class Op:
    name: str
    description: str  # one line, matched against the concept text by embedding similarity
    fn: Callable[[Tensor, dict, "OpContext"], Tensor]
    params: tuple[Param, ...] = ()
    # a neural style op's index into the style network's styles (weightgen.pairs.editors.neural_ops);
    # the bank editor runs all chosen styles as one pass, their weights the network's style vector
    style: int | None = None


def _p(name: str, low: float, high: float) -> Param:
    return Param(name, low, high)


# (name, description, function, parameters), in application order.
_BANK = [
    # structure: paintings, drawings, prints, tilings
    Op("stained_glass", "a stained glass window of bright coloured glass pieces and dark lead lines",
       S.stained_glass, (_p("cells", 24, 64), _p("saturation", 1.3, 2.0))),
    Op("low_poly", "low poly 3d render of flat angular triangles, cubist geometric facets",
       S.low_poly, (_p("cell", 6, 10),)),
    Op("oil_painting", "impressionist oil painting with thick brushstrokes, like van gogh or monet",
       S.oil_painting, (_p("radius", 2, 3), _p("saturation", 1.2, 1.7), _p("impasto", 0.3, 0.8))),
    Op("clay", "plasticine claymation, a smooth soft clay figure",
       S.clay, (_p("saturation", 1.1, 1.5),)),
    Op("watercolor", "a soft watercolor painting with bleeding washes of colour on paper",
       S.watercolor, (_p("bleed", 0.8, 1.8), _p("edge", 1.0, 3.0))),
    Op("pointillism", "pointillism, painted with many small dots of pure colour like seurat",
       S.pointillism, (_p("saturation", 1.3, 1.8),)),
    Op("cartoon", "a flat cartoon or anime with bold black outlines and simple cel shading",
       S.cartoon, (_p("levels", 3, 6), _p("lines", 0.06, 0.12))),
    Op("woodblock", "a japanese ukiyo-e woodblock print in indigo ink on paper",
       S.woodblock, (_p("indigo", 0.4, 0.9),)),
    Op("graffiti", "spray painted graffiti street art on a brick wall",
       S.graffiti, (_p("saturation", 1.5, 2.2),)),
    Op("pixel_art", "blocky low resolution pixel art with big square pixels",
       S.pixel_art, (_p("block", 3, 6),)),
    Op("bricks", "lego bricks, a plastic toy built from lego",
       S.bricks, (_p("block", 4, 6),)),
    Op("mosaic", "an ancient tile mosaic of small square stones with grout lines",
       S.mosaic, (_p("tile", 4, 6),)),
    Op("embroidery", "cross-stitch embroidery sewn with thread on fabric",
       S.embroidery, (_p("saturation", 1.1, 1.5),)),
    Op("ink", "a black ink drawing with bold outlines, comic book inking",
       S.ink, (_p("fill", 0.3, 0.8), _p("lines", 0.05, 0.1))),
    Op("pencil_sketch", "a graphite pencil or charcoal sketch on white paper",
       S.pencil_sketch, (_p("softness", 1.0, 2.5), _p("darkness", 1.5, 3.0))),
    Op("crosshatch", "pen and ink cross-hatching, an old engraving or etching",
       S.crosshatch, (_p("spacing", 3.0, 5.0),)),
    Op("halftone", "a comic book halftone print made of coloured dots",
       S.halftone, (_p("dot", 3.0, 5.0),)),
    Op("emboss", "an embossed relief carved in stone or stamped in metal",
       S.emboss, (_p("depth", 2.0, 4.0), _p("metal_hue", 0.02, 0.14))),
    Op("neon", "glowing neon light outlines on a dark background, synthwave",
       S.neon, (_p("hue", 0.0, 1.0), _p("glow", 1.0, 2.5))),
    Op("blueprint", "a technical blueprint drawing with white lines on blue paper",
       S.blueprint, (_p("lines", 0.05, 0.1),)),
    Op("chalkboard", "a chalk drawing on a dark green school blackboard",
       S.chalkboard, (_p("lines", 0.05, 0.1),)),
    Op("miniature", "a tilt-shift miniature, like a tiny toy model",
       S.miniature, (_p("band", 0.1, 0.35),)),
    # materials and colour maps
    Op("thermal", "a thermal infrared heat camera view in false colours",
       T.thermal, (_p("blur", 0.5, 1.5),)),
    Op("xray", "a medical x-ray scan with glowing bones",
       T.xray, (_p("contrast", 1.1, 1.5),)),
    Op("fire", "burning flames, blazing fire and glowing red embers",
       T.fire, (_p("heat", 1.1, 1.6),)),
    Op("toxic", "radioactive toxic green slime, an alien or zombie",
       T.toxic, (_p("glow", 0.3, 0.8),)),
    Op("gold", "a statue made of shiny polished gold",
       T.gold, (_p("shine", 1.1, 1.5),)),
    Op("chrome", "shiny chrome metal, a robot or machine",
       T.chrome, (_p("bands", 1.0, 2.0),)),
    Op("marble", "a white marble sculpture carved from stone",
       T.marble, (_p("veins", 0.2, 0.5),)),
    Op("wood", "carved from wood with brown wood grain",
       T.wood, (_p("ring", 3.0, 6.0),)),
    Op("paper_cutout", "layered paper cutout craft, origami made of coloured paper",
       T.paper_cutout, (_p("hue", 0.0, 1.0),)),
    Op("glass", "clear transparent glass, shiny and reflective",
       T.glass, (_p("tint", 0.2, 0.45),)),
    Op("hologram", "a glowing blue hologram with scanlines, sci-fi projection",
       T.hologram, (_p("glow", 0.3, 0.7),)),
    Op("candy", "candy and sugary sweets, glossy bright pink lollipops",
       T.candy, (_p("pink", 0.2, 0.45),)),
    Op("ice", "frozen in clear blue ice with frost crystals",
       T.ice, (_p("frost", 0.4, 0.8),)),
    Op("sepia", "an old sepia toned antique photograph from the 1900s",
       T.sepia, (_p("fade", 0.05, 0.3),)),
    Op("noir", "a high contrast black and white film noir",
       T.noir, (_p("contrast", 6.0, 14.0),)),
    Op("duotone", "a two colour duotone print with bold graphic colours",
       T.duotone, (_p("shadow_hue", 0.0, 1.0), _p("hue_gap", 0.15, 0.5))),
    Op("posterize", "a posterized pop art screen print with a few flat colours, andy warhol",
       T.posterize, (_p("levels", 2.0, 4.0),)),
    Op("retro_palette", "a retro 8-bit video game with a limited colour palette",
       T.retro_palette, (_p("hue_shift", -40.0, 40.0),)),
    Op("vivid", "vivid oversaturated bright rainbow colours, vibrant and colourful",
       T.vivid, (_p("saturation", 1.8, 2.6),)),
    Op("pastel", "soft pastel colours, light, cute and dreamy",
       T.pastel, (_p("tint_hue", 0.8, 1.1), _p("lightness", 0.25, 0.45))),
    Op("hue_shift", "surreal psychedelic colours with shifted hues, trippy",
       T.hue_shift, (_p("angle", 90.0, 270.0),)),
    Op("negative", "inverted colours like a photographic negative",
       T.negative, (_p("hue_shift", -30.0, 30.0),)),
    # seasons, places, light and weather
    Op("autumn", "in autumn, fall foliage with orange and red leaves",
       T.autumn, (_p("amount", 0.6, 1.0),)),
    Op("spring", "in spring, fresh green leaves and pink cherry blossoms",
       T.spring, (_p("blossom", 0.2, 0.5),)),
    Op("moss", "overgrown with green moss, vines and plants, abandoned ruins",
       T.moss, (_p("cover", 0.5, 0.9),)),
    Op("desert", "sand dunes of a hot dusty desert, sahara",
       T.desert, (_p("dust", 0.15, 0.35),)),
    Op("night", "at night, a dark nighttime scene under blue moonlight",
       T.night, (_p("gamma", 1.8, 2.6),)),
    Op("space", "in outer space, stars in a black sky, galaxy",
       T.space, (_p("gamma", 2.0, 3.0),)),
    Op("golden_hour", "warm golden hour sunset light with an orange glow",
       T.golden_hour, (_p("glow", 0.3, 0.8),)),
    Op("cold", "cold icy blue colour grading, a freezing winter mood",
       T.cold, (_p("contrast", 1.0, 1.3),)),
    Op("storm", "dark dramatic stormy weather under heavy clouds",
       T.storm, (_p("contrast", 1.2, 1.5),)),
    Op("cyberpunk", "a cyberpunk city in magenta and cyan light, futuristic",
       T.cyberpunk, (_p("amount", 0.5, 0.8),)),
    Op("underwater", "underwater in blue green water, deep sea",
       T.underwater, (_p("depth", 0.2, 0.6),)),
    Op("fog", "a misty foggy morning with thick grey haze",
       T.fog, (_p("density", 0.35, 0.6),)),
    Op("rain", "rainy weather with falling raindrops and wet grey light",
       T.rain, (_p("streaks", 0.3, 0.6),)),
    Op("snow", "a snowy winter landscape covered in white snow, falling snowflakes",
       T.snow, (_p("cover", 0.3, 0.7),)),
    Op("ghost", "a pale translucent ghost, spectral and haunted",
       T.ghost, (_p("glow", 0.3, 0.6),)),
    Op("dreamy_glow", "a soft dreamy glow with ethereal blurred highlights, fantasy",
       T.dreamy_glow, (_p("radius", 1.5, 3.0),)),
    Op("hdr", "a crisp HDR photo with exaggerated detail and sharpness",
       T.hdr, (_p("amount", 1.5, 3.0),)),
    Op("vintage", "a faded vintage 1970s polaroid with washed out colours",
       T.vintage, (_p("lift", 0.5, 1.0),)),
    Op("fresco", "a faded renaissance fresco painted on old plaster",
       T.fresco, (_p("lift", 0.0, 0.1),)),
    Op("weathered", "old, weathered and worn, with cracked paint and dust",
       T.weathered, (_p("cracks", 0.4, 0.8),)),
    # overlays
    Op("glitch", "digital glitch art with shifted RGB channels and scanlines",
       T.glitch, (_p("shift", 1.0, 3.0),)),
    Op("film_grain", "a grainy analog film photograph with heavy noise",
       T.film_grain, (_p("amount", 0.1, 0.25),)),
    Op("vignette", "a dark vignette around the edges, a moody lomography photo",
       T.vignette, (_p("strength", 0.5, 0.9),)),
]

OPS: dict[str, Op] = {op.name: op for op in _BANK}
