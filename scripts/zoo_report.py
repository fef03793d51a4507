"""Did the zoo's LoRAs learn their concepts? Per-concept test quality vs the base, and the weight statistics.

    python scripts/zoo_report.py ZOO [PAIRS] [BASE] [--plot docs/zoo_quality.png] [--out docs/zoo_report.md]
                                 [--no-style]

For every concept of the zoo manifest (both splits), the base generator and each of the K
checkpoints are evaluated again on the concept's test pairs (L1 and PSNR in [0, 1] pixel range):
re-loading the adapters from disk checks that what was saved reproduces what was measured. The
base and the last checkpoint also get the style distance (gan.perceptual: L1 rewards blur, this
does not), and per split one Fréchet style distance of base and of LoRA outputs against the
targets over all its concepts' test pairs (~7 ms per output image on one thread; only the
base and last checkpoint are scored, to keep it at that). The markdown table goes to stdout
(and --out); the plot shows LoRA vs base L1 per concept and the PSNR gain. Then
weightgen.chunks.chunk_stats gives what the generator must learn: total LoRA params, N blocks,
per-group scale, and how far apart checkpoints of one concept are compared with two different
concepts. PAIRS and BASE default to the paths in the zoo manifest.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from gan.base import load_base  # noqa: E402
from gan.data import PairedData  # noqa: E402
from gan.lora import load_adapter  # noqa: E402
from gan.metrics import evaluate_pairs, score_pairs  # noqa: E402
from gan.perceptual import StyleEmbedder, frechet_distance  # noqa: E402
from weightgen.chunks.stats import chunk_stats
from weightgen.zoo.store import read_manifest


def evaluate_zoo(zoo: Path, pairs: Path, base: Path, embedder: StyleEmbedder | None = None) -> list[dict]:
    """One row per concept: base metrics and the metrics of each checkpoint, re-measured from disk.

    With an embedder, the base and the last checkpoint also get "style", and the row keeps their
    outputs' and the targets' style embeddings ("_style_embeddings", dropped from the JSON) for
    the per-split Fréchet distances.
    """
    manifest = read_manifest(zoo)
    generator, _ = load_base(base)
    rows = []
    for i, (cid, info) in enumerate(manifest["concepts"].items()):
        data = PairedData.load(pairs, [cid]).concepts[0]
        scored = score_pairs(generator, data.test_source, data.test_target, embedder=embedder)
        base_m = scored.compute()
        ckpts, last_scored = [], None
        for j, ck in enumerate(info["checkpoints"]):
            model = load_adapter(copy.deepcopy(generator), zoo / ck["path"])
            last = j == len(info["checkpoints"]) - 1
            if last and embedder is not None:
                last_scored = score_pairs(model, data.test_source, data.test_target, embedder=embedder)
                metrics = last_scored.compute()
            else:
                metrics = evaluate_pairs(model, data.test_source, data.test_target)
            ckpts.append({"step": ck["step"], **metrics, "recorded_l1": ck["metrics"]["l1"]})
        rows.append({"id": cid, "text": info["text"], "split": info["split"], "base": base_m, "checkpoints": ckpts})
        if embedder is not None and last_scored is not None:
            (base_out, targets), (lora_out, _) = scored.embeddings, last_scored.embeddings
            rows[-1]["_style_embeddings"] = {"base": base_out, "lora": lora_out, "targets": targets}
        print(f"[{i + 1}/{len(manifest['concepts'])}] {info['text']}: L1 {base_m['l1']:.4f} -> "
              f"{ckpts[-1]['l1']:.4f}", file=sys.stderr, flush=True)
    return rows


def split_style(rows: list[dict]) -> dict[str, dict]:
    """Per split: Fréchet style distance of base and of LoRA (last checkpoint) outputs against the targets."""
    out = {}
    for split in ("train", "heldout"):
        sel = [r["_style_embeddings"] for r in rows if r["split"] == split and "_style_embeddings" in r]
        if not sel:
            continue
        targets = torch.cat([e["targets"] for e in sel])  # (concepts x test pairs, 100)
        out[split] = {"n": len(targets), **{f"{who}_style_fd": frechet_distance(torch.cat([e[who] for e in sel]),
                                                                                targets) for who in ("base", "lora")}}
    return out


def markdown(rows: list[dict], fd: dict[str, dict]) -> str:
    style = all("style" in r["base"] for r in rows)
    lines = ["| concept | split | base L1 | LoRA L1 (last) | LoRA L1 (mean of K) | base PSNR | LoRA PSNR | gain dB |"
             + (" base style | LoRA style |" if style else ""), "|---|---|---|---|---|---|---|---|"
             + ("---|---|" if style else "")]
    for r in rows:
        last = r["checkpoints"][-1]
        mean_l1 = statistics.mean(c["l1"] for c in r["checkpoints"])
        lines.append(f"| {r['text']} | {r['split']} | {r['base']['l1']:.4f} | {last['l1']:.4f} | {mean_l1:.4f} | "
                     f"{r['base']['psnr']:.2f} | {last['psnr']:.2f} | {last['psnr'] - r['base']['psnr']:+.2f} |"
                     + (f" {r['base']['style']:.3f} | {last['style']:.3f} |" if style else ""))
    lines += ["", "| split | concepts | mean base L1 | mean LoRA L1 | LoRA better than base | mean PSNR gain dB | "
                  "max re-measure drift (L1) |" + (" mean base → LoRA style | LoRA style better | style FD base → "
                                                    "LoRA (n) |" if style else ""),
              "|---|---|---|---|---|---|---|" + ("---|---|---|" if style else "")]
    for split in ("train", "heldout"):
        sel = [r for r in rows if r["split"] == split]
        if not sel:
            continue
        better = sum(r["checkpoints"][-1]["l1"] < r["base"]["l1"] for r in sel)
        drift = max(abs(c["l1"] - c["recorded_l1"]) for r in sel for c in r["checkpoints"])
        line = (f"| {split} | {len(sel)} | {statistics.mean(r['base']['l1'] for r in sel):.4f} | "
                f"{statistics.mean(r['checkpoints'][-1]['l1'] for r in sel):.4f} | {better}/{len(sel)} | "
                f"{statistics.mean(r['checkpoints'][-1]['psnr'] - r['base']['psnr'] for r in sel):+.2f} | "
                f"{drift:.1e} |")
        if style:
            style_better = sum(r["checkpoints"][-1]["style"] < r["base"]["style"] for r in sel)
            f = fd.get(split)
            line += (f" {statistics.mean(r['base']['style'] for r in sel):.3f} → "
                     f"{statistics.mean(r['checkpoints'][-1]['style'] for r in sel):.3f} | {style_better}/{len(sel)} | "
                     + (f"{f['base_style_fd']:.2f} → {f['lora_style_fd']:.2f} ({f['n']}) |" if f else "n/a |"))
        lines.append(line)
    return "\n".join(lines)


def stats_markdown(stats: dict) -> str:
    d_raw, d_norm = stats["distances_raw"], stats["distances_normalized"]
    lines = [f"{stats['n_concepts']} training concepts x {stats['n_checkpoints'] // max(stats['n_concepts'], 1)} "
             f"checkpoints; {stats['total_lora_params']:,} LoRA params per adapter in N = {stats['n_blocks']} blocks "
             f"of b = {stats['block_size']} ({stats['padding_fraction']:.1%} padding).", "",
             "| distance between checkpoints (L2) | same concept | different concepts | ratio |", "|---|---|---|---|"]
    for name, d in (("raw weights", d_raw), ("normalized blocks", d_norm)):
        fmt = lambda v: "n/a" if v is None else f"{v:.4g}"  # noqa: E731
        lines.append(f"| {name} | {fmt(d['within_concept_l2'])} | {fmt(d['between_concept_l2'])} | "
                     f"{fmt(d['between_over_within'])} |")
    lines += ["", "| group | params | blocks | rms |", "|---|---|---|---|"]
    lines += [f"| {g['name']} | {g['n_params']} | {g['n_blocks']} | {g['rms']:.3e} |" for g in stats["groups"]]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    matplotlib.use("Agg")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    for split, colour in (("train", "tab:blue"), ("heldout", "tab:orange")):
        sel = [r for r in rows if r["split"] == split]
        if not sel:
            continue
        ax1.scatter([r["base"]["l1"] for r in sel], [r["checkpoints"][-1]["l1"] for r in sel], s=14, c=colour,
                    label=f"{split} ({len(sel)})")
        ax2.hist([r["checkpoints"][-1]["psnr"] - r["base"]["psnr"] for r in sel], bins=20, alpha=0.6, color=colour,
                 label=split)
    hi = max(max(r["base"]["l1"], r["checkpoints"][-1]["l1"]) for r in rows) * 1.05
    ax1.plot([0, hi], [0, hi], "k--", lw=0.8, label="no gain")
    ax1.set(xlim=(0, hi), ylim=(0, hi), xlabel="base test L1", ylabel="zoo LoRA test L1 (last checkpoint)",
            title="per-concept test L1: below the line = learned")
    ax1.legend()
    ax2.axvline(0, color="k", lw=0.8)
    ax2.set(xlabel="PSNR gain of the LoRA over the base (dB)", ylabel="concepts", title="test PSNR gain")
    ax2.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("zoo", type=Path)
    parser.add_argument("pairs", type=Path, nargs="?", help="default: the manifest's pairs folder")
    parser.add_argument("base", type=Path, nargs="?", help="default: the manifest's base folder")
    parser.add_argument("--plot", type=Path, default=Path("docs/zoo_quality.png"))
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    parser.add_argument("--json", type=Path, help="write the per-concept rows and the statistics as JSON here")
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-style", action="store_true", help="skip the style distance (gan.perceptual)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    manifest = read_manifest(args.zoo)
    pairs, base = args.pairs or Path(manifest["pairs"]), args.base or Path(manifest["base"])
    t0 = time.perf_counter()
    embedder = None if args.no_style else StyleEmbedder(threads=args.threads)
    rows = evaluate_zoo(args.zoo, pairs, base, embedder)
    fd = split_style(rows)
    for r in rows:
        r.pop("_style_embeddings", None)
    stats = chunk_stats(args.zoo, block_size=args.block_size)
    text = (f"## Zoo quality ({args.zoo}, {len(rows)} concepts, evaluated in {time.perf_counter() - t0:.0f} s)\n\n"
            f"{markdown(rows, fd)}\n\n## Zoo weight statistics (train split)\n\n{stats_markdown(stats)}\n")
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "style_fd": fd, "stats": stats}, indent=1))
    plot(rows, args.plot)
    print(f"plot: {args.plot}", file=sys.stderr)


if __name__ == "__main__":
    main()
