"""Measure an editor (default: the bank): throughput, ONNX threads, paraphrase smoothness, composition; draw a gallery.

    python scripts/bench_editor.py [--editor bank|procedural] [--gallery docs/editor_gallery.png] [--threads 1]

Prints markdown. Concepts come from the shipped prompt set's held-out split when it exists,
else from the built-in list in weightgen/pairs/similarity.py (the output says which).
For the bank it also times the style network alone (one image per run: its graph fixes the batch
at 1) at 1 and 2 ONNX intra-op threads, the whole editor at each, and a --style-image concept.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # set before torch/onnxruntime start their thread pools

import matplotlib  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import skimage.data  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from weightgen.pairs.build import build_pairs  # noqa: E402
from weightgen.pairs.config import PairsConfig  # noqa: E402
from weightgen.pairs.editors import load_editor  # noqa: E402
from weightgen.pairs.editors.neural_ops import StyleNetwork  # noqa: E402
from weightgen.pairs.similarity import BUILTIN_PARAPHRASES, similarity_check  # noqa: E402
from weightgen.pairs.sources import SourceConfig, build_sources  # noqa: E402
from weightgen.text_encoders import load_text_encoder  # noqa: E402

GALLERY_CONCEPTS = [
    "van gogh style", "at night", "van gogh style, at night", "pencil sketch", "stained glass window",
    "monet water lilies", "cubism", "made of lego bricks", "in winter snow", "ukiyo-e print",
    "cyberpunk neon city", "made of gold",
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


def make_editor(name: str, encoder, **options):
    return load_editor(name, encoder=encoder, **options)


def throughput(editor, sources, texts) -> tuple[float, float]:
    """(pairs/s, seconds) of plan + edit over `texts` x the train crops, plans not cached."""
    editor.edit(sources[:4], "warm-up")
    t0 = time.perf_counter()
    for text in texts:
        editor.edit(sources, text, seed=0)
    dt = time.perf_counter() - t0
    return len(texts) * len(sources) / dt, dt


def network_ms(threads: int, size: int, runs: int = 64) -> float:
    """Milliseconds per image of the style network alone at size x size."""
    net = StyleNetwork(threads=threads, scale=1.0)
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    w = np.eye(26, dtype=np.float32)[16]
    net.stylize(x, w)
    t0 = time.perf_counter()
    for _ in range(runs):
        net.stylize(x, w)
    return (time.perf_counter() - t0) / runs * 1000


def painting_file(folder: str) -> str:
    """A stand-in painting for the --style-image timing: a bundled photo painted by the network's starry night."""
    photo = torch.from_numpy(np.ascontiguousarray(skimage.data.chelsea()[::2, ::2])).permute(2, 0, 1)[None].float() / 255
    painted = StyleNetwork(scale=1.0).stylize(photo, np.eye(26, dtype=np.float32)[19])[0]
    path = os.path.join(folder, "painting.png")
    Image.fromarray((painted.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--editor", default="bank", choices=["bank", "procedural"], help="registry name")
    ap.add_argument("--gallery", default="docs/editor_gallery.png", help="PNG to write ('' = none)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch default)")
    ap.add_argument("--n", type=int, default=64, help="pairs per concept in the throughput run")
    ap.add_argument("--concepts", type=int, default=24, help="concepts in the throughput run")
    ap.add_argument("--prompt-file", default=None, help="prompt set file (default: the shipped one)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bank = args.editor == "bank"

    t0 = time.perf_counter()
    encoder = load_text_encoder("minilm")
    editor = make_editor(args.editor, encoder)
    t_load = time.perf_counter() - t0
    sources = build_sources(SourceConfig(image_size=64, n_train=args.n, n_test=16, seed=0))
    groups, related, comps, label = heldout_groups(args.prompt_file)
    texts = [g[0] for g in groups][: args.concepts]

    # 1. throughput: plan (embedding + lasso) and edit, per concept, 64x64 (bank: at 1 and 2 ONNX threads)
    rates, neural_rates = {}, {}
    neural_texts = [t for t in texts if bank and any(editor.ops[s.op].style is not None for s in editor.plan(t))]
    for onnx_threads in (1, 2) if bank else (None,):
        options = {"onnx_threads": onnx_threads} if bank else {}
        rates[onnx_threads] = throughput(make_editor(args.editor, encoder, **options), sources.train, texts)
        if neural_texts:  # the painted concepts alone: the slowest kind
            neural_rates[onnx_threads] = throughput(make_editor("bank", encoder, **options), sources.train, neural_texts)[0]
    default_threads = editor.config.onnx_threads if bank else None
    rate, dt = rates[default_threads]
    if bank:
        work = StyleNetwork(scale=editor.config.style_scale).work_size(64, 64)[0]
        net = {t: network_ms(t, work) for t in (1, 2)}
        with tempfile.TemporaryDirectory() as tmp:
            styled = make_editor("bank", encoder, style_image=painting_file(tmp))
            t0 = time.perf_counter()
            styled.edit(sources.train[:16], "my painting")
            style_image_rate = 16 / (time.perf_counter() - t0)

    # 1b. end to end: build_pairs into a temporary folder (edits + safetensors + manifest writes)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = PairsConfig(out=tmp, editor=args.editor, image_size=64, n_train=args.n, n_test=16, seed=0)
        t0 = time.perf_counter()
        build_pairs(texts, cfg, editor=make_editor(args.editor, encoder))  # no cached plans
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

    title = "Bank editor (neural styles + procedural ops)" if bank else "Procedural editor"
    print(f"## {title} (scripts/bench_editor.py --editor {args.editor})\n")
    n_neural = sum(op.style is not None for op in editor.ops.values())
    print(f"- ops in the bank: {len(editor.ops)} ({n_neural} neural styles); encoder + op embeddings load: {t_load:.1f} s")
    print(f"- torch threads: {torch.get_num_threads()}; machine load average: {os.getloadavg()[0]:.1f}")
    if bank:
        print(f"- style network alone at its {work}x{work} working size (64 px x style_scale "
              f"{editor.config.style_scale}), one image per run (the graph fixes batch 1): "
              + ", ".join(f"{t} ONNX thread{'s' if t > 1 else ''} {ms:.1f} ms/image" for t, ms in net.items()))
        print("\n| ONNX intra-op threads | whole editor, all concepts | painted concepts alone |\n|---|---|---|")
        for t, (r, _) in rates.items():
            print(f"| {t}{' (default)' if t == default_threads else ''} | {r:.0f} pairs/s | "
                  f"{neural_rates.get(t, float('nan')):.0f} pairs/s |")
        print()
    print(f"- throughput at 64x64: **{rate:.0f} pairs/s** ({len(texts)} concepts x {len(sources.train)} pairs in "
          f"{dt:.2f} s{f'; {len(neural_texts)} of them painted by a neural style' if bank else ''})")
    if bank:
        print(f"- a `--style-image` concept (arbitrary-style network at its fixed 384x384): {style_image_rate:.1f} pairs/s")
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
        compare = make_editor("procedural", encoder) if bank else None
        write_gallery(editor, sources, args.gallery, compare)
        print(f"\ngallery: {args.gallery}")


def write_gallery(editor, sources, path: str, compare=None) -> None:
    """One row per concept (two train, two test crops) with its ops; `compare`'s van gogh row below the first."""
    matplotlib.use("Agg")
    src = torch.cat([sources.train[:2], sources.test[:2]])

    def ops(ed, text):
        return ", ".join(f"{op} {w:.2f}" for op, w in ed.explain(text).items())

    rows = [("source", src)]
    for i, c in enumerate(GALLERY_CONCEPTS):
        rows.append((f"{c}  [{ops(editor, c)}]", editor.edit(src, c, seed=0)))
        if i == 0 and compare is not None:
            rows.append((f"{c}, {compare.name} editor  [{ops(compare, c)}]", compare.edit(src, c, seed=0)))
    fig, axes = plt.subplots(len(rows), 1, figsize=(5.6, 1.55 * len(rows)))
    for ax, (title, imgs) in zip(axes, rows):
        strip = torch.cat(list(imgs), dim=2).permute(1, 2, 0).numpy()  # (H, 4W, 3)
        ax.imshow(strip, interpolation="nearest")
        ax.set_title(title, fontsize=6.5, loc="left", pad=2)
        ax.axis("off")
    fig.tight_layout(pad=0.3)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    random.seed(0)
    main()
