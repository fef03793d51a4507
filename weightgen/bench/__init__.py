"""`weightgen bench`: on held-out concepts, the same fine-tune recipe for every method, timed to the oracle's quality.

The methods (config.METHODS): pix2pix from scratch, zero-init LoRA on the base, the zoo mean, the
nearest training concept's LoRA (plain and with noise), and the generated LoRA (1 step, DDIM).
The target is each concept's own LoRA at its best checkpoint on validation crops of its train
canvases (targets), or for a concepts-file concept a reference fine-tune the bench makes
(reference); four targets: the oracle's quality and 90% of its gain, on L1 and on the style
distance. Runs are evaluated densely on a small fixed batch (the full test set at intervals),
baselines train on to a multiple of the generated init's steps to each target, and the report
(report, markdown, plots) gives censored medians, paired ratios with bootstrap intervals (stats),
the paper's table (paper), the zero-shot table and the CPU time.

    cfg = BenchConfig(zoo="runs/zoo", out="runs/bench")
    run_bench(cfg)              # resumable; shard="i/n" splits the concepts between processes
    write_report("runs/bench")  # bench.json, bench.md, curves_steps.png, curves_seconds.png, step0.png, tracking.png

Modules: config (registries, BenchConfig, the schedule), concepts (which concepts), targets
(evaluation sets, the oracle, the targets), reference (reference fine-tunes), runner (the runs,
budgets, stop rule), stats, report (the summary), markdown, plots, paper (the paper's figures).
"""
