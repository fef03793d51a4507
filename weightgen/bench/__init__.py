"""`weightgen bench`: on the zoo's held-out concepts, the same fine-tune recipe and budget for every method.

The methods (config.METHODS): pix2pix from scratch, zero-init LoRA on the base, the zoo mean, the
nearest training concept's LoRA (plain and with noise), and the generated LoRA (1 step, DDIM).
The target is each held-out concept's own zoo LoRA (the oracle). Every run records its test
quality at step 0 and over training; steps- and seconds-to-target are its first evaluation at
or below the oracle's test L1, censored when the budget runs out first.

    cfg = BenchConfig(zoo="runs/zoo", out="runs/bench", steps=200)
    run_bench(cfg)            # resumable; shard="i/n" splits the concepts between processes
    write_report("runs/bench")  # bench.json, bench.md, curves_steps.png, curves_seconds.png, step0.png
"""

from weightgen.bench.config import METHODS, BenchConfig, Method, parse_shard
from weightgen.bench.report import load_results, summarize, write_report
from weightgen.bench.runner import (
           heldout_concepts,
           run_bench,
           run_path,
           select_concepts,
)
from weightgen.bench.stats import (
           Hit,
           compare_steps,
           first_hit,
           format_interval,
           median_interval,
           ratio_interval,
)

__all__ = ["METHODS", "BenchConfig", "Hit", "Method", "compare_steps", "first_hit", "format_interval",
           "heldout_concepts", "load_results", "median_interval", "parse_shard", "ratio_interval", "run_bench",
           "run_path", "select_concepts", "summarize", "write_report"]
