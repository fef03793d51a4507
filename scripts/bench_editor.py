"""Measure the procedural editor: throughput, paraphrase smoothness, composition; draw a gallery.

    python scripts/bench_editor.py [--gallery docs/editor_gallery.png] [--threads 1]

Prints markdown. Concepts come from the shipped prompt set's held-out split when it exists,
else from the built-in list in weightgen/pairs/similarity.py (the output says which).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time

import matplotlib
import matplotlib.pyplot as plt

from weightgen.pairs.build import build_pairs
from weightgen.pairs.config import PairsConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from weightgen.pairs.editors.ops import OPS  # noqa: E402
from weightgen.pairs.editors.procedural import ProceduralConfig, ProceduralEditor  # noqa: E402
from weightgen.pairs.similarity import BUILTIN_PARAPHRASES, similarity_check  # noqa: E402
from weightgen.pairs.sources import SourceConfig, build_sources  # noqa: E402
from weightgen.text_encoders import load_text_encoder  # noqa: E402

GALLERY_CONCEPTS = [
    "van gogh style", "at night", "van gogh style, at night", "pencil sketch", "stained glass window",
    "made of lego bricks", "in winter snow", "ukiyo-e print", "cyberpunk neon city", "made of gold",
]


def heldout_groups(path: str | None = None):
    """(groups, related pairs, compositions, label) from the prompt set, or the built-in list."""
    try:
        try:
            from prompts import load_prompt_set
        except ImportError:
            from prompts.concepts import load_prompt_set
        ps = load_prompt_set(path)
    except Exception as e:  # missing package or file: fall back, and say so
        return BUILTIN_PARAPHRASES, set(), [], f"built-in list ({len(BUILTIN_PARAPHRASES)} concepts; prompt set unavailable: {e})"
    held = [c for c in ps.heldout if c.paraphrases]
    by_id = ps.by_id

    def family(c):  # a concept, its ancestors and its components: all "related"
        ids, stack = set(), [c.id]
        while stack:
            cur = by_id.get(stack.pop())
            if cur is None or cur.id in ids:
                continue
            ids.add(cur.id)
            stack += ([cur.parent] if cur.parent else []) + list(cur.components)
        return ids

    fams = [family(c) for c in held]
    related = {(i, j) for i in range(len(held)) for j in range(len(held)) if i != j and fams[i] & fams[j]}
    comps = [(c.text, [by_id[k].text for k in c.components]) for c in ps.concepts if len(c.components) >= 2]
    label = f"{'shipped prompt set' if path is None else path}, held-out split ({len(held)} concepts with paraphrases)"
    return [(c.text, list(c.paraphrases)) for c in held], related, comps, label


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gallery", default="docs/editor_gallery.png", help="PNG to write ('' = none)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--n", type=int, default=64, help="pairs per concept in the throughput run")
    ap.add_argument("--concepts", type=int, default=24, help="concepts in the throughput run")
    ap.add_argument("--prompt-file", default=None, help="prompt set file (default: the shipped one)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    encoder = load_text_encoder("minilm")
    editor = ProceduralEditor(ProceduralConfig(), encoder=encoder)
    t_load = time.perf_counter() - t0
    sources = build_sources(SourceConfig(image_size=64, n_train=args.n, n_test=16, seed=0))
    groups, related, comps, label = heldout_groups(args.prompt_file)

    # 1. throughput: plan (embedding + lasso) and edit, per concept, 64x64
    texts = [g[0] for g in groups][: args.concepts]
    editor.edit(sources.train[:4], "warm-up")
    t0 = time.perf_counter()
    for text in texts:
        editor.edit(sources.train, text, seed=0)
    dt = time.perf_counter() - t0
    rate = len(texts) * len(sources.train) / dt

    # 1b. end to end: build_pairs into a temporary folder (edits + safetensors + manifest writes)

    with tempfile.TemporaryDirectory() as tmp:
        cfg = PairsConfig(out=tmp, image_size=64, n_train=args.n, n_test=16, seed=0)
        t0 = time.perf_counter()
        build_pairs(texts, cfg, editor=ProceduralEditor(ProceduralConfig(), encoder=encoder))  # no cached plans
        dt_build = time.perf_counter() - t0
    rate_build = len(texts) * (args.n + 16) / dt_build

    # 2. smoothness over the held-out concepts
    src = torch.cat([sources.train[:16], sources.test[:16]])
    report = similarity_check(editor, src, groups, unrelated_per_concept=3, seed=0, related=related)

    # 3. compositions: does the blend contain the main op of every component?
    covered = 0
    for text, parts in comps:
        ops = {s.op for s in editor.plan(text)}
        covered += all(max(editor.plan(p), key=lambda s: s.weight).op in ops for p in parts)

    print("## Procedural editor (scripts/bench_editor.py)\n")
    print(f"- ops in the bank: {len(OPS)}; encoder + op embeddings load: {t_load:.1f} s")
    print(f"- torch threads: {torch.get_num_threads()}; machine load average: {os.getloadavg()[0]:.1f}")
    print(f"- throughput at 64x64: **{rate:.0f} pairs/s** ({len(texts)} concepts x {len(sources.train)} pairs in {dt:.2f} s)")
    print(f"- `build_pairs` end to end (op embeddings, photos, crops, plans, edits, atomic writes): {rate_build:.0f} pairs/s")
    print(f"- concepts: {label}")
    print("\n| measure | value |\n|---|---|")
    print(f"| paraphrase pairs | {report.n_paraphrase_pairs} |")
    print(f"| unrelated pairs | {report.n_unrelated_pairs} |")
    print(f"| mean pixel distance, paraphrases | {report.paraphrase_distance:.4f} |")
    print(f"| mean pixel distance, unrelated | {report.unrelated_distance:.4f} |")
    print(f"| **ratio (target < 0.333)** | **{report.ratio:.3f}** |")
    if comps:
        print(f"| compositions whose blend holds every component's main op | {covered}/{len(comps)} |")

    if args.gallery:
        write_gallery(editor, sources, args.gallery)
        print(f"\ngallery: {args.gallery}")


def write_gallery(editor, sources, path: str) -> None:
    matplotlib.use("Agg")
    src = torch.cat([sources.train[:2], sources.test[:2]])  # two train, two test crops
    rows = [("source", src)] + [(c, editor.edit(src, c, seed=0)) for c in GALLERY_CONCEPTS]
    fig, axes = plt.subplots(len(rows), 1, figsize=(4.2, 1.25 * len(rows)))
    for ax, (title, imgs) in zip(axes, rows):
        strip = torch.cat(list(imgs), dim=2).permute(1, 2, 0).numpy()  # (H, 4W, 3)
        ax.imshow(strip, interpolation="nearest")
        ax.set_title(title, fontsize=8, loc="left", pad=2)
        ax.axis("off")
    fig.tight_layout(pad=0.3)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    random.seed(0)
    main()
