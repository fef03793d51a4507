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
