"""Batched image helpers for the op bank: (N, C, H, W) float tensors in [0, 1], CPU-friendly.

Filters are written as in-place shifted adds rather than depthwise conv2d: on CPU they are
several times faster at the 64x64 sizes this project trains on.
"""

from __future__ import annotations

import colorsys
import math

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def luma(x: Tensor) -> Tensor:
    """(N, 1, H, W) Rec. 601 luminance."""
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def gray3(g: Tensor) -> Tensor:
    return g.expand(-1, 3, -1, -1)


def mix(a: Tensor, b: Tensor, t) -> Tensor:
    return a + (b - a) * t


def smoothstep(e0: float, e1: float, x: Tensor) -> Tensor:
    t = ((x - e0) / (e1 - e0)).clamp(0, 1)
    return t * t * (3 - 2 * t)


def rgb(*values: float) -> Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1)


def hue_color(hue: float, sat: float = 0.8, val: float = 0.9) -> Tensor:
    """(1, 3, 1, 1) colour from a hue in [0, 1) (wrapped), for concept-chosen tints."""
    return rgb(*colorsys.hsv_to_rgb(hue % 1.0, sat, val))


def saturation(x: Tensor, s: float) -> Tensor:
    g = luma(x)
    return g + (x - g) * s


def contrast(x: Tensor, c: float, pivot: float = 0.5) -> Tensor:
    return (x - pivot) * c + pivot


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur with reflect padding (keeps edges from darkening).

    Written as in-place shifted adds: on CPU this is 5-10x faster than a depthwise conv2d.
    """
    if sigma <= 0.05:
        return x
    h, w = x.shape[-2:]
    radius = min(max(1, int(math.ceil(2.5 * sigma))), h - 1, w - 1)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).tolist()
    p = F.pad(x, (radius, radius, 0, 0), mode="reflect")
    y = p[..., 0:w] * k[0]
    for i in range(1, 2 * radius + 1):
        y.add_(p[..., i : i + w], alpha=k[i])
    p = F.pad(y, (0, 0, radius, radius), mode="reflect")
    y = p[..., 0:h, :] * k[0]
    for i in range(1, 2 * radius + 1):
        y.add_(p[..., i : i + h, :], alpha=k[i])
    return y


def conv3x3(x: Tensor, kernel: list[list[float]]) -> Tensor:
    """3x3 filter of every channel (replicate padding), as shifted adds like `gaussian_blur`."""
    h, w = x.shape[-2:]
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    y = torch.zeros_like(x)
    for i in range(3):
        for j in range(3):
            if kernel[i][j]:
                y.add_(p[..., i : i + h, j : j + w], alpha=kernel[i][j])
    return y


def box_mean(x: Tensor, k: int) -> Tensor:
    """Mean over every k x k window (no padding: output is k-1 smaller per side), shifted adds."""
    h, w = x.shape[-2:]
    y = x[..., : w - k + 1].clone()
    for i in range(1, k):
        y.add_(x[..., i : i + w - k + 1])
    z = y[..., : h - k + 1, :].clone()
    for i in range(1, k):
        z.add_(y[..., i : i + h - k + 1, :])
    return z / (k * k)


def sobel(g: Tensor) -> Tensor:
    """(N, 1, H, W) gradient magnitude of a single-channel image, ~[0, 1] for real photos."""
    gx = conv3x3(g, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    gy = conv3x3(g, [[-1, -2, -1], [0, 0, 0], [1, 2, 1]])
    return torch.sqrt(gx * gx + gy * gy + 1e-8) / 4


def edge_lines(x: Tensor, threshold: float, pre_blur: float = 0.7) -> Tensor:
    """(N, 1, H, W) soft line mask in [0, 1] where the (slightly blurred) image has edges."""
    e = sobel(luma(gaussian_blur(x, pre_blur)))
    return smoothstep(threshold, threshold * 2.5, e)


def gradient_map(g: Tensor, colors: list[tuple[float, float, float]]) -> Tensor:
    """Map luminance (N, 1, H, W) through a piecewise-linear colour ramp -> (N, 3, H, W)."""
    stops = torch.tensor(colors, dtype=g.dtype)  # (K, 3)
    k = stops.shape[0] - 1
    pos = g.clamp(0, 1) * k
    i0 = pos.floor().clamp(max=k - 1).long()
    t = pos - i0
    c0 = stops[i0.squeeze(1)].permute(0, 3, 1, 2)  # (N, 3, H, W)
    c1 = stops[(i0 + 1).squeeze(1)].permute(0, 3, 1, 2)
    return c0 + (c1 - c0) * t


def hue_rotate(x: Tensor, degrees: float) -> Tensor:
    """Rotate chroma in YIQ space: a linear, per-pixel hue shift that keeps luminance."""
    a = math.radians(degrees)
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    rot = torch.tensor([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    m = torch.linalg.inv(to_yiq) @ rot @ to_yiq
    return torch.einsum("ij,njhw->nihw", m.to(x.dtype), x)


def color_matrix(x: Tensor, m: list[list[float]]) -> Tensor:
    return torch.einsum("ij,njhw->nihw", torch.tensor(m, dtype=x.dtype), x)


def pixelate(x: Tensor, block: float) -> Tensor:
    h, w = x.shape[-2:]
    size = (max(1, round(h / block)), max(1, round(w / block)))
    small = F.adaptive_avg_pool2d(x, size)
    return F.interpolate(small, size=(h, w), mode="nearest")


def grid_coords(h: int, w: int) -> tuple[Tensor, Tensor]:
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    return ys.view(1, 1, h, w), xs.view(1, 1, h, w)


def segment_mean(x: Tensor, labels: Tensor) -> Tensor:
    """Replace every pixel by the mean colour of its segment.

    labels: (H, W) shared by the batch, or (N, H, W) numbered uniquely across the batch.
    """
    n, c, h, w = x.shape
    if labels.ndim == 2:
        flat = labels.reshape(-1)
        count = torch.bincount(flat).clamp(min=1).to(x.dtype)  # (L,)
        sums = torch.zeros(n, c, count.numel(), dtype=x.dtype).index_add_(2, flat, x.reshape(n, c, h * w))
        return (sums / count)[:, :, flat].view(n, c, h, w)
    flat = labels.reshape(-1)
    count = torch.bincount(flat).clamp(min=1).to(x.dtype)
    pix = x.permute(0, 2, 3, 1).reshape(-1, c)
    sums = torch.zeros(count.numel(), c, dtype=x.dtype).index_add_(0, flat, pix)
    return (sums / count[:, None])[flat].view(n, h, w, c).permute(0, 3, 1, 2)


def label_borders(labels: Tensor) -> Tensor:
    """(N or 1, 1, H, W) 1.0 where the right or lower neighbour has another label: 1-px lines."""
    lab = labels.view(-1, 1, *labels.shape[-2:])
    border = torch.zeros(lab.shape, dtype=torch.float32)
    border[..., :, :-1] += (lab[..., :, 1:] != lab[..., :, :-1]).float()
    border[..., :-1, :] += (lab[..., 1:, :] != lab[..., :-1, :]).float()
    return border.clamp(max=1)


def cracks(noise: Tensor, width: float) -> Tensor:
    """(1, 1, H, W) thin crack lines: the zero crossings of smoothed noise."""
    n = gaussian_blur(noise, 1.5)
    n = (n - n.mean()) / n.std().clamp(min=1e-6)
    return smoothstep(width, 0.0, n.abs())
