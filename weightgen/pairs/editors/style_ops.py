"""Structure ops: paintings, drawings, prints and tilings (they change edges and textures).

Every op is `fn(x, params, ctx) -> y`: x and y (N, 3, H, W) float (y may leave [0, 1]; the editor
clamps), params the op's scalars by name, ctx the OpContext (source photo, seeded patterns, cache).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
import torch.nn.functional as F
from skimage.segmentation import slic

from weightgen.pairs.editors.context import OpContext
from weightgen.pairs.editors.imageops import (
    box_mean,
    contrast,
    conv3x3,
    edge_lines,
    gaussian_blur,
    gray3,
    grid_coords,
    hue_color,
    label_borders,
    luma,
    mix,
    pixelate,
    rgb,
    saturation,
    segment_mean,
    smoothstep,
    sobel,
)

Tensor = torch.Tensor


def stained_glass(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    """SLIC superpixels of the source photo, each filled with its mean colour, lead between."""
    labels = superpixels(ctx, n_segments=int(p["cells"]))  # (N, H, W) long, unique across batch
    glass = saturation(segment_mean(x, labels), p["saturation"]) * 1.1
    return glass * (1 - 0.9 * label_borders(labels))


def superpixels(ctx: OpContext, n_segments: int) -> Tensor:
    """skimage SLIC per source image, cached by the source bytes (sources repeat across concepts)."""
    src = ctx.source
    key = ("slic", n_segments, hashlib.sha1(src.numpy().tobytes()).hexdigest())
    if key not in ctx.cache:
        arr = src.permute(0, 2, 3, 1).double().numpy()
        out, offset = [], 0
        for img in arr:
            lab = slic(img, n_segments=n_segments, compactness=6, start_label=0, max_num_iter=5)
            out.append(torch.from_numpy(lab.astype(np.int64)) + offset)
            offset += int(lab.max()) + 1
        ctx.cache[key] = torch.stack(out)
    return ctx.cache[key]


def oil_painting(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    """Kuwahara filter: each pixel takes the mean of its least-varied quadrant -> flat strokes."""
    r = int(round(p["radius"]))
    h, w = x.shape[-2:]
    g = luma(x)
    stack = torch.cat([x, g, g * g], 1)
    m = box_mean(F.pad(stack, (r, r, r, r), mode="reflect"), r + 1)  # (N, 5, H+r, W+r)
    best, best_var = None, None
    for q in (m[..., :h, :w], m[..., :h, r : r + w], m[..., r : r + h, :w], m[..., r:, r:]):
        var = q[:, 4:5] - q[:, 3:4] ** 2
        if best is None:
            best, best_var = q[:, :3], var
        else:
            take = var < best_var
            best, best_var = torch.where(take, q[:, :3], best), torch.where(take, var, best_var)
    relief = conv3x3(gaussian_blur(luma(best), 0.7), [[-1, -1, 0], [-1, 0, 1], [0, 1, 1]])  # impasto
    return saturation(best, p["saturation"]) * (1 + p["impasto"] * relief)


def watercolor(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    b = gaussian_blur(x, p["bleed"])
    b = mix(b, torch.round(b * 5) / 5, 0.35)  # pigment pools into a few washes
    edges = sobel(luma(b))
    paper = 0.93 + 0.07 * gaussian_blur(ctx.pattern("paper", *x.shape[-2:]), 0.8)
    out = b * (1 - p["edge"] * edges.clamp(0, 1))
    out = 1 - (1 - out) * 0.8  # thin, light pigment
    return out * paper


def cartoon(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    smooth = gaussian_blur(x, 1.0)
    levels = p["levels"]
    flat = torch.round(saturation(smooth, 1.3) * levels) / levels
    return flat * (1 - edge_lines(x, p["lines"]))


def pixel_art(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    return saturation(pixelate(x, p["block"]), 1.2)


def mosaic(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    block = int(round(p["tile"]))
    h, w = x.shape[-2:]
    ys, xs = grid_coords(h, w)
    grout = (((ys % block) < 1) | ((xs % block) < 1)).float()
    jitter = pixelate(ctx.pattern("tiles", h, w), block) - 0.5
    tiles = saturation(pixelate(x, block), 1.3) + 0.12 * jitter
    return mix(tiles, rgb(0.85, 0.82, 0.75), grout * 0.8)


def ink(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    fill = 1 - (1 - torch.round(saturation(x, 0.6) * 3) / 3) * p["fill"]
    return fill * (1 - edge_lines(x, p["lines"]))


def pencil_sketch(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    """Colour-dodge of the grey image by its blurred negative: the classic pencil sketch."""
    g = luma(x)
    b = gaussian_blur(1 - g, p["softness"])
    sketch = (g / (1 - b + 1e-3)).clamp(0, 1) ** p["darkness"]
    paper = 0.96 + 0.04 * ctx.pattern("paper", *x.shape[-2:])
    return gray3(sketch * paper) * rgb(1.0, 0.98, 0.94)


def crosshatch(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    h, w = x.shape[-2:]
    ys, xs = grid_coords(h, w)
    period = p["spacing"]

    def stripes(u):
        return smoothstep(0.55, 0.8, torch.cos(2 * math.pi * u / period) * 0.5 + 0.5)

    g = gaussian_blur(luma(x), 0.6)
    ink = (
        stripes(xs + ys) * smoothstep(0.8, 0.6, g)
        + stripes(xs - ys) * smoothstep(0.55, 0.4, g)
        + stripes(xs) * smoothstep(0.35, 0.2, g)
    ).clamp(0, 1)
    ink = torch.maximum(ink, edge_lines(x, 0.12))
    return gray3(1 - 0.9 * ink) * rgb(0.98, 0.95, 0.88)


def halftone(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    """CMY halftone: each ink is a dot screen at its own angle, dot size from the ink amount."""
    h, w = x.shape[-2:]
    ys, xs = grid_coords(h, w)
    period = p["dot"]
    out = []
    for ch, angle in zip(range(3), (15.0, 75.0, 0.0)):
        a = math.radians(angle)
        u, v = xs * math.cos(a) + ys * math.sin(a), -xs * math.sin(a) + ys * math.cos(a)
        screen = (torch.cos(2 * math.pi * u / period) * torch.cos(2 * math.pi * v / period) + 1) / 2
        ink = torch.sigmoid(((1 - x[:, ch : ch + 1]) - (1 - screen)) * 12)
        out.append(1 - ink)
    return torch.cat(out, 1)


def emboss(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    g = gaussian_blur(luma(x), 0.5)
    relief = 0.5 + p["depth"] * conv3x3(g, [[-2, -1, 0], [-1, 0, 1], [0, 1, 2]])
    return gray3(relief.clamp(0, 1)) * hue_color(p["metal_hue"], 0.25, 1.0)


def neon(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    e = smoothstep(0.03, 0.15, sobel(luma(gaussian_blur(x, 0.6))))
    color = saturation(x, 3.0).clamp(0, 1)
    color = color / color.amax(1, keepdim=True).clamp(min=0.2)
    lines = e * mix(color, hue_color(p["hue"], 1.0, 1.0), 0.5)
    return x * 0.12 + lines * 1.2 + gaussian_blur(lines, p["glow"]) * 1.5


def blueprint(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    h, w = x.shape[-2:]
    ys, xs = grid_coords(h, w)
    grid = (((ys % 8) < 1) | ((xs % 8) < 1)).float() * 0.15
    lines = torch.maximum(edge_lines(x, p["lines"]), grid)
    return mix(rgb(0.08, 0.22, 0.55), rgb(0.92, 0.95, 1.0), lines)


def chalkboard(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    dust = 0.75 + 0.25 * ctx.pattern("chalk", *x.shape[-2:])
    lines = edge_lines(x, p["lines"]) * dust
    fill = smoothstep(0.5, 0.9, luma(x)) * 0.35 * dust
    return mix(rgb(0.13, 0.2, 0.16), rgb(0.93, 0.93, 0.88), torch.maximum(lines, fill))



def low_poly(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    """Square cells cut along a (seeded) diagonal into two flat-shaded triangles."""
    c = int(round(p["cell"]))
    h, w = x.shape[-2:]
    ys, xs = grid_coords(h, w)
    u, v = ys % c, xs % c
    cell = (ys // c) * ((w + c - 1) // c) + (xs // c)
    flip = pixelate(ctx.pattern("facets", h, w), c) > 0.5  # one orientation per cell
    tri = torch.where(flip, u > v, (u + v) > (c - 1))
    labels = (cell * 2 + tri.float()).long().view(h, w)
    shade = 1 + 0.12 * (segment_mean(ctx.pattern("shade", h, w), labels) - 0.5)
    return saturation(segment_mean(x, labels), 1.2) * shade * (1 - 0.25 * label_borders(labels))


def clay(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    smooth = oil_painting(x, {"radius": 3, "saturation": 1.0, "impasto": 0.0}, ctx)
    base = saturation(gaussian_blur(smooth, 1.0), p["saturation"])
    g = luma(base)
    relief = conv3x3(g, [[-1, -1, 0], [-1, 0, 1], [0, 1, 1]])
    return base * (1 + 1.5 * relief) + 0.25 * smoothstep(0.8, 1.0, g)


def pointillism(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    """Dabs of jittered pure colour on a light canvas; darker areas get more dabs."""
    h, w = x.shape[-2:]
    base = saturation(gaussian_blur(x, 1.0), p["saturation"])
    jitter = torch.cat([ctx.pattern(f"dab{i}", h, w) for i in range(3)], 1) - 0.5
    blobs = gaussian_blur(ctx.pattern("dabs", h, w), 0.7)
    blobs = (blobs - blobs.mean()) / blobs.std() * 0.15 + 0.5
    coverage = smoothstep(-0.05, 0.05, blobs - (0.25 + 0.45 * luma(base)))
    return mix(rgb(0.97, 0.95, 0.9), base + 0.3 * jitter, coverage.clamp(min=0.35))


def woodblock(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    flat = torch.round(saturation(gaussian_blur(x, 1.0), 0.8).clamp(0, 1) * 3) / 3
    flat = mix(flat, rgb(0.1, 0.16, 0.32), smoothstep(0.35, 0.1, luma(flat)) * p["indigo"])
    paper = rgb(0.96, 0.91, 0.8) * (0.94 + 0.06 * ctx.pattern("washi", *x.shape[-2:]))
    return mix(flat, paper, 0.25) * (1 - edge_lines(x, 0.07))


def graffiti(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    h, w = x.shape[-2:]
    ys, xs = grid_coords(h, w)
    row = ys // 6
    mortar = (((ys % 6) < 1) | (((xs + (row % 2) * 6) % 12) < 1)).float()
    paint = torch.round(saturation(x, p["saturation"]).clamp(0, 1) * 2) / 2
    paint = paint * (1 - edge_lines(x, 0.06, pre_blur=1.0))
    return mix(paint, rgb(0.55, 0.5, 0.45), mortar * 0.5)


def bricks(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    """Toy bricks: flat saturated blocks, each with a shaded round stud."""
    b = int(round(p["block"]))
    h, w = x.shape[-2:]
    ys, xs = grid_coords(h, w)
    col = torch.round(saturation(pixelate(x, b), 1.5).clamp(0, 1) * 4) / 4
    dy, dx = ys % b - (b - 1) / 2, xs % b - (b - 1) / 2
    stud = smoothstep(b * 0.38, b * 0.28, torch.sqrt(dy * dy + dx * dx))
    shade = 1 - 0.35 * stud * (dy + dx) / b
    edge = ((ys % b) == b - 1) | ((xs % b) == b - 1)
    return col * shade * (1 - 0.3 * edge.float())


def embroidery(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    """Cross-stitch: each 3x3 cell is an X of thread in the cell's colour on linen."""
    h, w = x.shape[-2:]
    ys, xs = grid_coords(h, w)
    u, v = ys % 3, xs % 3
    stitch = ((u == v) | (u + v == 2)).float()
    thread = saturation(pixelate(x, 3), p["saturation"]) * (0.9 + 0.2 * (u == 1).float())
    return mix(rgb(0.9, 0.86, 0.78), thread, stitch)


def miniature(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    """Tilt-shift: sharp band across the middle, blurred top and bottom, toy-like colours."""
    h = x.shape[-2]
    y = torch.linspace(-1, 1, h).view(1, 1, h, 1)
    focus = smoothstep(p["band"], p["band"] + 0.4, y.abs())
    out = mix(x, gaussian_blur(x, 2.0), focus)
    return contrast(saturation(out, 1.6), 1.15)
