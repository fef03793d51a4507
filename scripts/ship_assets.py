"""Copy a built base GAN, a trained generator and the zoo reference into weightgen/assets/.

    python scripts/ship_assets.py --zoo runs/zoo --generator runs/generator/generator [--out weightgen/assets]

What ships is what `weightgen init` and `weightgen finetune` use when given no paths: the base
(gan.base folder), the generator (a `weightgen train` generator folder) and a ZooReference (the
training concepts' last checkpoints and the zoo mean, for --init mean / nearest). The base is the
one the zoo names in its manifest, so the three always belong together; the script checks that
the generator was trained on that base and refuses to ship more than --max-mb in total.
The full rebuild from nothing is `weightgen pipeline configs/default.toml` (or
scripts/build_zoo.sh + `weightgen chunks` + `weightgen train`, as docs/rebuild.md records).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", type=Path, required=True)
    parser.add_argument("--generator", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "weightgen" / "assets")
    parser.add_argument("--max-mb", type=float, default=50.0)
    args = parser.parse_args()

    from weightgen.chunks import zoo_checkpoints
    from weightgen.init import WeightGenPipeline
    from weightgen.inits import ZooReference
    from weightgen.io import atomic_dir, read_json

    _, manifest = zoo_checkpoints(args.zoo, "train")
    base = Path(manifest["base"])
    pipe = WeightGenPipeline.from_pretrained(args.generator)
    pipe.check_compatible(base=read_json(base / "weightgen.json"))
    ref = ZooReference.from_zoo(args.zoo, layout=pipe.layout)

    staging = args.out.parent / (args.out.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copytree(base, staging / "base")
    shutil.copytree(args.generator, staging / "generator")
    ref.save(staging / "zoo_reference")
    total = folder_mb(staging)
    if total > args.max_mb:
        shutil.rmtree(staging)
        sys.exit(f"assets would be {total:.1f} MB, over --max-mb {args.max_mb}")
    with atomic_dir(args.out, overwrite=True) as tmp:
        for name in ("base", "generator", "zoo_reference"):
            shutil.move(str(staging / name), tmp / name)
    shutil.rmtree(staging, ignore_errors=True)
    for name in ("base", "generator", "zoo_reference"):
        print(f"{args.out / name}: {folder_mb(args.out / name):.1f} MB")
    print(f"total {folder_mb(args.out):.1f} MB (limit {args.max_mb} MB)")


if __name__ == "__main__":
    main()
