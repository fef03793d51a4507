"""Start-up time of the CLI: `weightgen --help` and a cold `weightgen init`, each as a fresh process.

Every run starts a new interpreter in a scratch folder (nothing cached in the working directory),
writes a new adapter folder and deletes it afterwards. Prints median / min / max per case, the
machine's load average before and after, and the sha256 of the written adapter_model.safetensors
(it must not change between runs or between code versions for the same concept and seed).

    python scripts/bench_startup.py                  # 5 runs of each case
    python scripts/bench_startup.py --runs 9 --json docs/bench_startup.json
    python scripts/bench_startup.py --floor          # also: the third-party imports init cannot avoid
    python scripts/bench_startup.py --src /tmp/old --src /tmp/new   # A/B two source trees

--src DIR (repeatable) puts a copy of the source tree (weightgen/, gan/, prompts/) first on
PYTHONPATH; the runs of all trees are interleaved, so load from other jobs hits each alike.

--floor adds two reference processes: `import torch`, and the imports the init path needs from
other packages (torch, diffusers' ModelMixin + schedulers, transformers' BertModel + tokenizer),
so what weightgen itself adds is the difference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOOR_IMPORTS = (
    "import torch, safetensors.torch; "
    "from diffusers import DDIMScheduler, DDPMScheduler; "
    "from diffusers.models.modeling_utils import ModelMixin; "
    "from diffusers.models.embeddings import TimestepEmbedding; "
    "from transformers import BertModel, BertTokenizer"
)


def _weightgen_cmd() -> list[str]:
    """The installed `weightgen` script next to this interpreter, else `python -m weightgen`."""
    script = Path(sys.executable).with_name("weightgen")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "weightgen"]


def _time_process(cmd: list[str], cwd: Path, env: dict) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - t0, proc


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Case:
    """One command to time; `out` is the adapter folder it writes (deleted before every run)."""

    def __init__(self, name: str, cmd: list[str], env: dict, out: Path | None = None):
        self.name, self.cmd, self.env, self.out = name, cmd, env, out
        self.times: list[float] = []
        self.digests: set[str] = set()

    def run(self, cwd: Path, timed: bool) -> None:
        if self.out is not None and self.out.exists():
            shutil.rmtree(self.out)
        seconds, proc = _time_process(self.cmd, cwd, self.env)
        if proc.returncode != 0:
            raise SystemExit(f"{self.name}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
        if self.out is not None:
            self.digests.add(_sha256(self.out / "adapter_model.safetensors"))
            shutil.rmtree(self.out)
        if timed:
            self.times.append(seconds)

    def row(self) -> dict:
        t = self.times
        row = {"case": self.name, "command": " ".join(self.cmd), "runs": len(t), "median_s": statistics.median(t),
               "min_s": min(t), "max_s": max(t), "times_s": [round(x, 3) for x in t]}
        if self.env.get("PYTHONPATH"):
            row["pythonpath"] = self.env["PYTHONPATH"]
        if self.out is not None:
            row["adapter_sha256"] = min(self.digests) if len(self.digests) == 1 else sorted(self.digests)
        return row


def run_cases(cases: list[Case], runs: int, cwd: Path) -> list[dict]:
    """One untimed warm-up round (fills the OS file cache), then `runs` rounds over all cases."""
    for i in range(runs + 1):
        for case in cases:
            case.run(cwd, timed=i > 0)
    return [case.row() for case in cases]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="timed runs per case (after one warm-up)")
    ap.add_argument("--concept", default="van gogh style")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--floor", action="store_true", help="also time the unavoidable third-party imports")
    ap.add_argument("--no-help", action="store_true", help="skip the `weightgen --help` case")
    ap.add_argument("--src", type=Path, action="append", default=[],
                    help="source tree to put first on PYTHONPATH (repeat to compare trees)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    for src in args.src:
        if not (src / "weightgen" / "__init__.py").is_file():
            ap.error(f"--src {src} has no weightgen/ package")

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    wg = _weightgen_cmd()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_startup_") as tmp:
        cwd = Path(tmp)
        cases = []
        trees = [(src.resolve().name, {**env, "PYTHONPATH": str(src.resolve())}) for src in args.src] or [("", env)]
        for i, (label, tree_env) in enumerate(trees):
            suffix = f" [{label}]" if label else ""
            out = cwd / f"adapter{i}"
            if not args.no_help:
                cases.append(Case("weightgen --help" + suffix, wg + ["--help"], tree_env))
            init = wg + ["init", "--concept", args.concept, "--seed", str(args.seed), "--out", str(out)]
            cases.append(Case("weightgen init (cold)" + suffix, init, tree_env, out=out))
        if args.floor:
            cases.append(Case("python: import torch", [sys.executable, "-c", "import torch"], env))
            cases.append(Case("python: init's third-party imports", [sys.executable, "-c", FLOOR_IMPORTS], env))
        rows = run_cases(cases, args.runs, cwd)
    load_after = os.getloadavg()

    import torch  # only for the version line, after the timed processes

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_avg_before": [round(v, 2) for v in load_before],
        "load_avg_after": [round(v, 2) for v in load_after],
        "concept": args.concept,
        "seed": args.seed,
        "cases": rows,
    }
    print(f"machine: {result['machine']}, python {result['python']}, torch {result['torch']}")
    print(f"load average (1/5/15 min): before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    print()
    print("| case | runs | median s | min s | max s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['runs']} | {r['median_s']:.2f} | {r['min_s']:.2f} | {r['max_s']:.2f} |")
    print()
    for r in rows:
        if "adapter_sha256" in r:
            print(f"{r['case']}: adapter_model.safetensors sha256 {r['adapter_sha256']}")
    digests = {json.dumps(r["adapter_sha256"]) for r in rows if "adapter_sha256" in r}
    if len(digests) > 1 or any(isinstance(r.get("adapter_sha256"), list) for r in rows):
        print("WARNING: the adapter bytes differ (between runs or between source trees)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
