"""The zoo across processes: a real kill -9 mid-concept, and 2 CPU ranks under `accelerate launch`."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from gan.config import (
    BaseTrainConfig,
    DiscriminatorConfig,
    GanTrainConfig,
    GeneratorConfig,
    LoraSettings,
    default_rank_pattern,
)
from weightgen.pairs.synthetic import write_synthetic_pairs
from weightgen.zoo.base import build_base
from weightgen.zoo.build import build_zoo
from weightgen.zoo.config import BaseConfig, ZooConfig
from weightgen.zoo.plan import ZooConcept
from weightgen.zoo.ranks import Ranks
from weightgen.zoo.store import read_manifest

TEXTS = ["warm sepia", "cold blue", "green tint", "pink glow"]
TINY_G = dict(base_channels=8, n_downsample=2, n_res_blocks=1, attention_heads=2, image_size=32)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo-ranks")
    pairs = write_synthetic_pairs(root / "pairs", TEXTS, n_train=8, n_test=4, image_size=32)
    config = BaseConfig(out=str(root / "base"), pairs=str(pairs), model=BaseTrainConfig(
        GeneratorConfig(**TINY_G), DiscriminatorConfig(base_channels=8), GanTrainConfig(max_steps=1, eval_every=0)))
    build_base(config, TEXTS[:2], progress=False)
    return root / "base", pairs


def zoo_args(zoo, base, pairs, per_pass: int = 1) -> list[str]:
    args = ["zoo", "build", "-o", zoo, "--base", base, "--pairs", pairs, "--steps", 4, "--k", 2,
            "--checkpoint-window", 0.5, "--rank", 2, "--batch-size", 4, "--eval-every", 0, "--cpu", "--no-progress",
            "--heldout-concept", TEXTS[-1], "--concepts-per-pass", per_pass]
    for t in TEXTS[:-1]:
        args += ["--concept", t]
    return [str(a) for a in args]


def test_shard_by_index():
    assert Ranks(0, 2).shard(list("abcde")) == list("ace") and Ranks(1, 2).shard(list("abcde")) == list("bd")
    assert Ranks().shard([1, 2]) == [1, 2]


@pytest.mark.slow
@pytest.mark.parametrize("per_pass", [1, 2], ids=["one-at-a-time", "2-per-pass"])
def test_resume_after_kill_9_mid_concept(inputs, tmp_path, per_pass):
    base, pairs = inputs
    zoo = tmp_path / "zoo"
    victim = ZooConcept(TEXTS[1]).id
    # A child process that SIGKILLs itself while the second concept's adapters sit in their temporary folder.
    script = textwrap.dedent(f"""
        import os, signal, sys
        import weightgen.zoo.store as store
        from weightgen.cli import main
        real = store.checkpoint_record
        def record(zoo, folder, cid, index):
            if cid == {victim!r}:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(zoo, folder, cid, index)
        store.checkpoint_record = record
        main(sys.argv[1:])
    """)
    proc = subprocess.run([sys.executable, "-c", script, *zoo_args(zoo, base, pairs, per_pass)], env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    first = ZooConcept(TEXTS[0]).id
    assert list(zoo.glob(f".{victim}.*.tmp"))  # the killed concept's half-built folder, under a temporary name
    assert not (zoo / victim).exists() and list(read_manifest(zoo)["concepts"]) == [first]

    messages = []  # resume in-process with the CLI's settings (a different recipe would be refused)
    config = ZooConfig(out=str(zoo), base=str(base), pairs=str(pairs),
                       lora=LoraSettings(rank=2, alpha=2.0, rank_pattern=default_rank_pattern(2)),
                       train=GanTrainConfig(batch_size=4, lr=1e-3, lr_d=2e-4, max_steps=4, eval_every=0, cpu=True),
                       k=2, checkpoint_window=0.5, concepts_per_pass=per_pass)
    plan = [ZooConcept(t) for t in TEXTS[:-1]] + [ZooConcept(TEXTS[-1], "heldout")]
    report = build_zoo(config, plan, progress=False, log=messages.append)
    assert report.skipped == [first] and report.built == [c.id for c in plan[1:]] and report.rebuilt == []
    assert any("removed an unfinished temporary" in m for m in messages)
    assert not list(zoo.glob(".*.tmp")) and read_manifest(zoo)["complete"]


@pytest.mark.slow
@pytest.mark.parametrize("per_pass", [1, 2], ids=["one-at-a-time", "2-per-pass"])
def test_two_cpu_ranks_with_accelerate_launch(inputs, tmp_path, per_pass):
    base, pairs = inputs
    zoo = tmp_path / "zoo"
    with socket.socket() as s:  # a free port: other jobs on this machine may hold accelerate's default
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(port), "-m", "weightgen", *zoo_args(zoo, base, pairs, per_pass)]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = read_manifest(zoo)
    assert m["complete"] and list(m["concepts"]) == [ZooConcept(t).id for t in TEXTS]
    ranks = [json.loads((zoo / cid / "entry.json").read_text())["rank"] for cid in m["concepts"]]
    assert ranks == [0, 1, 0, 1]  # concept i trained by rank i % 2, each once
    assert "4/4 concepts complete" in proc.stdout and proc.stdout.count("concepts complete") == 1  # main only
    from weightgen.chunks.dataset import build_chunk_dataset, load_chunk_dataset

    data = load_chunk_dataset(build_chunk_dataset(zoo, tmp_path / "chunks", block_size=64, progress=False))
    assert data.concepts == TEXTS[:-1]
