"""The fast fine-tune of a new concept, and every start it can take (the product's main job).

Modules:
  config   INIT_KINDS and FinetuneConfig (no torch: the CLI reads them)
  starts   the init kinds' weights (generated, zero, zoo mean, nearest, nearest + noise) and the zoo reference
  job      finetune(): pairs -> init -> cGAN + L1 within a time budget, the best adapter always on disk
  report   the curve, the before/after grid and the summary table
"""
