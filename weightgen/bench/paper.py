"""The figures the bench is framed against, from the paper it reproduces: one place, cited.

Gong, Zhan, Li, Idelbayev, Zharkov, Aberman, Tulyakov, Wang, Ren: "Efficient Training with
Denoised Neural Weights", ECCV 2024 (arXiv:2407.11966, doi:10.1007/978-3-031-73010-8_2): the
per-concept comparison of total training time and FID (against the diffusion model's outputs) of
pix2pix trained from scratch, E2GAN (a zero-init LoRA on a base GAN) and the paper's
denoised-weights init followed by the same fine-tune. The speed-ups are the paper's own times'
ratios (15.2x and 4.6x; the abstract rounds the first to 15x).

Their FID is over the paper's image sets on a GPU; ours is a Fréchet distance over style
embeddings on a CPU (gan.perceptual), so only the ratios, not the absolute numbers, compare.
"""

from __future__ import annotations

from dataclasses import dataclass

CITATION = ("Gong et al., Efficient Training with Denoised Neural Weights, ECCV 2024 (arXiv:2407.11966): "
            "training time and FID per concept")


@dataclass(frozen=True)
class PaperRow:
    label: str  # the paper's name for the method
    seconds: float  # total training time per concept to the reported quality
    fid: float  # FID against the diffusion model's outputs (lower is better)


# bench method -> the paper's row
PAPER_ROWS: dict[str, PaperRow] = {
    "scratch": PaperRow("pix2pix", 659.8, 99.20),
    "zero": PaperRow("E2GAN", 198.5, 93.86),
    "generated": PaperRow("denoised weights (DW)", 43.3, 89.93),
}


def paper_speedup(method: str, over: str) -> float | None:
    """The paper's time of `over` divided by the paper's time of `method` (None when either is not in the paper)."""
    if method not in PAPER_ROWS or over not in PAPER_ROWS:
        return None
    return PAPER_ROWS[over].seconds / PAPER_ROWS[method].seconds
