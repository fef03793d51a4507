"""Colour ops (materials, palettes, light, weather) and overlays (grain, glitch, vignette).

Same signature as style_ops: `fn(x, params, ctx) -> y` on (N, 3, H, W) floats.
"""

from __future__ import annotations

import math

import torch

from weightgen.pairs.editors.context import OpContext
from weightgen.pairs.editors.imageops import (
    color_matrix,
    contrast,
    cracks,
    edge_lines,
    gaussian_blur,
    gradient_map,
    gray3,
    grid_coords,
    hue_color,
    hue_rotate,
    luma,
    mix,
    rgb,
    saturation,
    smoothstep,
    sobel,
)

Tensor = torch.Tensor


def thermal(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    g = contrast(gaussian_blur(luma(x), p["blur"]), 1.3)
    ramp = [(0.0, 0.0, 0.1), (0.35, 0.0, 0.55), (0.85, 0.1, 0.25), (1.0, 0.6, 0.0), (1.0, 1.0, 0.35), (1.0, 1.0, 1.0)]
    return gradient_map(g, ramp)


def fire(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    g = contrast(luma(x), p["heat"])
    flames = gradient_map(g, [(0.05, 0.0, 0.0), (0.6, 0.05, 0.0), (1.0, 0.45, 0.0), (1.0, 0.85, 0.3)])
    return flames + 0.4 * gaussian_blur(flames * smoothstep(0.5, 1.0, g), 2.0)


def toxic(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    g = luma(x)
    slime = gradient_map(g, [(0.0, 0.05, 0.0), (0.2, 0.6, 0.05), (0.7, 1.0, 0.3)])
    return slime + p["glow"] * gaussian_blur(slime * smoothstep(0.4, 1.0, g), 2.0)


def gold(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    g = contrast(luma(x), p["shine"])
    return gradient_map(g, [(0.15, 0.08, 0.0), (0.6, 0.4, 0.05), (0.95, 0.75, 0.2), (1.0, 0.95, 0.7)])


def marble(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    g = gaussian_blur(luma(x), 0.6) * 0.6 + 0.45
    veins = smoothstep(0.05, 0.2, sobel(luma(x))) * p["veins"]
    return gray3((g - veins).clamp(0, 1)) * rgb(0.97, 0.97, 1.0)


def sepia(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    s = color_matrix(x, [[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])
    return mix(s, rgb(0.9, 0.8, 0.6), p["fade"])


def noir(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    g = luma(x)
    return gray3(torch.sigmoid((g - g.mean((2, 3), keepdim=True)) * p["contrast"]))


def duotone(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    dark = hue_color(p["shadow_hue"], 0.9, 0.3)
    light = hue_color(p["shadow_hue"] + p["hue_gap"], 0.6, 1.0)
    return mix(dark, light, contrast(luma(x), 1.2))


def posterize(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    levels = p["levels"]
    return torch.round(saturation(x, 1.4).clamp(0, 1) * levels) / levels


# PICO-8's 16 colours: a well-known retro game palette.
_PICO8 = [
    (0, 0, 0), (29, 43, 83), (126, 37, 83), (0, 135, 81), (171, 82, 54), (95, 87, 79), (194, 195, 199),
    (255, 241, 232), (255, 0, 77), (255, 163, 0), (255, 236, 39), (0, 228, 54), (41, 173, 255),
    (131, 118, 156), (255, 119, 168), (255, 204, 170),
]


def retro_palette(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    """Nearest-colour mapping onto a hue-rotated retro palette."""
    pal = torch.tensor(_PICO8, dtype=x.dtype).view(16, 3, 1, 1) / 255
    pal = hue_rotate(pal, p["hue_shift"]).clamp(0, 1)
    pal = pal.view(16, 3)
    d = (pal * pal).sum(1).view(1, 16, 1, 1) - 2 * torch.einsum("nchw,kc->nkhw", x, pal)  # (N, 16, H, W)
    nearest = d.min(1).indices  # (N, H, W) (faster than argmin on CPU); |x|^2 is the same for every colour: left out
    return pal[nearest].permute(0, 3, 1, 2)


def vivid(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    return contrast(saturation(x, p["saturation"]), 1.25)


def pastel(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    soft = saturation(x, 0.55)
    return mix(soft, hue_color(p["tint_hue"], 0.25, 1.0), p["lightness"])


def hue_shift(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    return saturation(hue_rotate(x, p["angle"]), 1.5)


def negative(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    return hue_rotate(1 - x, p["hue_shift"])


def autumn(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    a = p["amount"]
    m = [[1 - 0.3 * a, 0.9 * a, 0.0], [0.15 * a, 1 - 0.35 * a, 0.0], [0.0, 0.0, 1 - 0.4 * a]]
    return saturation(color_matrix(x, m), 1.2)


def night(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    dark = saturation(x, 0.4).clamp(0, 1) ** p["gamma"]
    return dark * rgb(0.45, 0.6, 1.1) + rgb(0.0, 0.02, 0.07)


def golden_hour(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    warm = x * rgb(1.15, 1.0, 0.7)
    glow = smoothstep(0.4, 1.0, luma(x)) * p["glow"]
    return contrast(warm, 1.1) + glow * rgb(0.35, 0.18, 0.0)


def cold(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    return contrast(x * rgb(0.8, 1.0, 1.2), p["contrast"]) + rgb(0.0, 0.03, 0.06)


def cyberpunk(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    g = luma(x)
    tone = mix(rgb(0.0, 0.35, 0.6), rgb(1.0, 0.25, 0.75), g)
    return mix(contrast(x, 1.2), tone * (0.3 + g), p["amount"])


def underwater(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    h = x.shape[-2]
    depth = torch.linspace(0, 1, h).view(1, 1, h, 1)
    water = gaussian_blur(x, 0.8) * rgb(0.35, 0.85, 0.95) * (1 - p["depth"] * depth)
    return water + rgb(0.0, 0.08, 0.12)


def fog(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    return mix(gaussian_blur(x, 1.2), rgb(0.82, 0.84, 0.86), p["density"])


def snow(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    h, w = x.shape[-2:]
    cold = saturation(x, 0.5) * rgb(0.95, 0.98, 1.05) + 0.12
    cover = smoothstep(0.3, 0.8, luma(x)) * p["cover"]
    flakes = smoothstep(0.93, 0.97, ctx.pattern("snow", h, w))
    return torch.maximum(mix(cold, rgb(0.97, 0.98, 1.0), cover), gray3(flakes))


def dreamy_glow(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    bright = gaussian_blur(x.clamp(0, 1) ** 1.5, p["radius"])
    return 1 - (1 - x) * (1 - 0.8 * bright)  # screen blend


def hdr(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    detail = x - gaussian_blur(x, 2.0)
    return saturation(x + p["amount"] * detail, 1.3)


def vintage(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    faded = contrast(saturation(x, 0.7), 0.75) * rgb(1.05, 1.0, 0.82)
    return faded + p["lift"] * rgb(0.12, 0.1, 0.04)


def glitch(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    shift = p["shift"]
    s0 = int(math.floor(shift))
    t = shift - s0

    def shifted(ch, d):
        a = torch.roll(ch, shifts=d, dims=-1)
        b = torch.roll(ch, shifts=d + (1 if d >= 0 else -1), dims=-1)
        return mix(a, b, t)

    out = torch.cat([shifted(x[:, 0:1], s0), x[:, 1:2], shifted(x[:, 2:3], -s0)], 1)
    h = x.shape[-2]
    scan = 1 - 0.25 * (torch.arange(h) % 2 == 0).float().view(1, 1, h, 1)
    return saturation(out, 1.3) * scan


def film_grain(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    noise = ctx.pattern("grain", *x.shape[-2:]) - 0.5
    return contrast(saturation(x, 0.8), 1.1) + p["amount"] * noise


def vignette(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    h, w = x.shape[-2:]
    ys, xs = grid_coords(h, w)
    r = torch.sqrt(((ys - (h - 1) / 2) / (h / 2)) ** 2 + ((xs - (w - 1) / 2) / (w / 2)) ** 2)
    return contrast(x, 1.15) * (1 - p["strength"] * smoothstep(0.5, 1.4, r))


def xray(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    g = contrast(1 - gaussian_blur(luma(x), 0.6), p["contrast"])
    film = gradient_map(g, [(0.0, 0.0, 0.04), (0.25, 0.4, 0.55), (0.85, 0.95, 1.0)])
    return film + 0.4 * smoothstep(0.05, 0.2, sobel(g))


def chrome(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    """Polished metal: luminance folded through a cosine reflects the 'environment' in bands."""
    g = gaussian_blur(luma(x), 0.6)
    bands = 0.5 + 0.5 * torch.cos(2 * math.pi * g * p["bands"])
    return gray3(bands) * rgb(0.85, 0.9, 1.0) + 0.3 * smoothstep(0.05, 0.2, sobel(g))


def ice(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    frozen = gradient_map(luma(x), [(0.05, 0.2, 0.35), (0.45, 0.75, 0.9), (0.92, 0.98, 1.0)])
    frost = torch.maximum(edge_lines(x, 0.06), smoothstep(0.96, 0.99, ctx.pattern("frost", *x.shape[-2:])))
    return mix(frozen, rgb(1.0, 1.0, 1.0), frost * p["frost"])


def spring(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    fresh = color_matrix(x, [[1.05, 0.1, 0.0], [0.05, 1.15, 0.0], [0.05, 0.0, 0.95]]) * 1.05
    return mix(fresh, rgb(1.0, 0.72, 0.85), smoothstep(0.55, 1.0, luma(x)) * p["blossom"])


def moss(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    g = luma(x)
    texture = gaussian_blur(ctx.pattern("moss", *x.shape[-2:]), 0.6)
    green = rgb(0.2, 0.42, 0.1) * (0.5 + 1.2 * texture) * (0.5 + g)
    return mix(x, green, smoothstep(0.6, 0.25, g) * p["cover"])


def desert(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    sand = contrast(x * rgb(1.1, 0.88, 0.6), 0.9)
    return mix(sand, rgb(0.9, 0.74, 0.52), p["dust"])


def space(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    g = luma(x)
    dark = x.clamp(0, 1) ** p["gamma"] * rgb(0.65, 0.55, 1.0)
    stars = smoothstep(0.985, 0.995, ctx.pattern("stars", *x.shape[-2:])) * smoothstep(0.45, 0.15, g)
    return dark + gray3(stars)


def storm(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    h = x.shape[-2]
    sky = 1 - 0.3 * torch.linspace(1, 0, h).view(1, 1, h, 1)  # heavier clouds at the top
    return contrast(saturation(x, 0.45), p["contrast"]) * 0.8 * rgb(0.85, 0.9, 1.0) * sky


def rain(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    h, w = x.shape[-2:]
    drops = (ctx.pattern("rain", h, w) > 0.97).float()
    streaks = sum(torch.roll(drops, shifts=(k, k // 3), dims=(-2, -1)) * (1 - k / 7) for k in range(7))
    wet = saturation(x, 0.6) * 0.8 * rgb(0.9, 0.95, 1.05)
    return mix(wet, rgb(0.85, 0.9, 0.95), streaks.clamp(0, 1) * p["streaks"])


def ghost(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    g = gaussian_blur(luma(x), 0.8)
    pale = rgb(0.7, 0.82, 1.0) * (0.35 + 0.65 * g) + 0.15
    return 1 - (1 - pale) * (1 - p["glow"] * gaussian_blur(gray3(g), 2.5))


def weathered(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    h, w = x.shape[-2:]
    worn = contrast(saturation(x, 0.6), 0.85) * rgb(1.02, 0.97, 0.85)
    crack = cracks(ctx.pattern("cracks", h, w), 0.12) * p["cracks"]
    dust = smoothstep(0.97, 0.99, ctx.pattern("dust", h, w)) * 0.4
    return worn * (1 - crack) + dust


def fresco(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    h, w = x.shape[-2:]
    plaster = 0.9 + 0.1 * gaussian_blur(ctx.pattern("plaster", h, w), 1.0)
    faded = contrast(saturation(gaussian_blur(x, 0.6), 0.6), 0.7) * rgb(1.05, 0.98, 0.85) + p["lift"]
    return faded * plaster * (1 - 0.35 * cracks(ctx.pattern("fresco", h, w), 0.08))


def wood(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    h, w = x.shape[-2:]
    ys, xs = grid_coords(h, w)
    warp = gaussian_blur(ctx.pattern("wood", h, w), 3.0)
    warp = (warp - warp.mean()) / warp.std().clamp(min=1e-6)
    grain = 0.5 + 0.5 * torch.sin(2 * math.pi * (ys / p["ring"] + 0.8 * warp))
    g = contrast(0.8 * gaussian_blur(luma(x), 0.6) + 0.2 * grain, 1.2)
    return gradient_map(g, [(0.25, 0.12, 0.04), (0.55, 0.33, 0.15), (0.85, 0.65, 0.4)])


def paper_cutout(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    """Layers of coloured paper: a few flat levels, each casting a soft shadow on the next."""
    levels = torch.round(gaussian_blur(luma(x), 1.2) * 3) / 3
    colors = [hue_color(p["hue"] + k * 0.08, 0.45, 0.55 + 0.15 * k) for k in range(4)]
    paper = gradient_map(levels, [tuple(c.flatten().tolist()) for c in colors])
    shadow = (torch.roll(levels, shifts=(1, 1), dims=(-2, -1)) > levels + 0.1).float()
    return paper * (1 - 0.3 * gaussian_blur(shadow, 0.7))


def glass(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    clear = mix(gaussian_blur(x, 1.2), rgb(0.75, 0.9, 0.95), p["tint"])
    shine = torch.maximum(edge_lines(x, 0.05), smoothstep(0.75, 0.95, luma(x)))
    return mix(clear, rgb(1.0, 1.0, 1.0), 0.8 * shine)


def hologram(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    h = x.shape[-2]
    g = luma(x)
    scan = 1 - 0.35 * (torch.arange(h) % 3 == 0).float().view(1, 1, h, 1)
    holo = rgb(0.2, 0.85, 1.0) * (0.25 + g) * scan + 0.6 * edge_lines(x, 0.05) * rgb(0.6, 1.0, 1.0)
    return holo + p["glow"] * gaussian_blur(holo, 2.0)


def candy(x: Tensor, p: dict, ctx: OpContext) -> Tensor:
    sweet = mix(saturation(x, 1.8), rgb(1.0, 0.45, 0.7), p["pink"])
    gloss = smoothstep(0.7, 0.95, gaussian_blur(luma(x), 1.0))
    return mix(sweet * 1.1, rgb(1.0, 1.0, 1.0), 0.6 * gloss)
