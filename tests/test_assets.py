"""The shipped defaults: base, generator and zoo reference load together, and the main verbs run on them."""

import pytest

from gan.io import read_json
from weightgen.shipped import (
    DEFAULT_BASE_DIR,
    DEFAULT_GENERATOR_DIR,
    DEFAULT_REFERENCE_DIR,
)

pytestmark = pytest.mark.skipif(not (DEFAULT_GENERATOR_DIR / "generator.json").is_file(),
                                reason="no generator shipped in weightgen/assets")


def test_shipped_artifacts_belong_together_and_fit_the_size_limit():
    from weightgen.finetune.starts import ZooReference
    from weightgen.generator.pipeline import WeightGenPipeline

    pipe = WeightGenPipeline.from_pretrained()
    pipe.check_compatible(base=read_json(DEFAULT_BASE_DIR / "weightgen.json"))  # raises on a mismatch
    ref = ZooReference.load()
    assert ref.layout.fingerprint == pipe.layout.fingerprint and len(ref.texts) == ref.final.shape[0] >= 16
    assert not set(pipe.info["validation_concepts"]) & set(pipe.info["concepts"])
    total = sum(f.stat().st_size for d in (DEFAULT_BASE_DIR, DEFAULT_GENERATOR_DIR, DEFAULT_REFERENCE_DIR)
                for f in d.rglob("*") if f.is_file())
    assert total <= 50 * 2**20


def test_cli_init_with_no_paths_writes_an_adapter_peft_loads(tmp_path, capsys):
    from peft import PeftModel

    from gan.base import load_base
    from weightgen.cli import main

    with pytest.raises(SystemExit) as e:
        main(["init", "--concept", "van gogh style", "--out", str(tmp_path / "vg")])
    assert e.value.code in (0, None), capsys.readouterr().err
    assert "generation" in capsys.readouterr().out
    generator, _ = load_base(DEFAULT_BASE_DIR)
    model = PeftModel.from_pretrained(generator, str(tmp_path / "vg"))
    assert sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) == 34048


@pytest.mark.slow
def test_cli_finetune_with_no_paths_runs_on_the_shipped_defaults(tmp_path, capsys):
    from weightgen.cli import main

    out = tmp_path / "ft"
    with pytest.raises(SystemExit) as e:
        main(["finetune", "--concept", "van gogh style", "--seconds", "30", "--max-steps", "2", "--eval-every", "1",
              "--n-train", "8", "--n-test", "4", "--threads", "1", "--out", str(out)])
    assert e.value.code in (0, None), capsys.readouterr().err
    summary = read_json(out / "summary.json")
    assert summary["init_kind"] == "generated" and summary["steps"] == 2
    assert all((out / name).exists() for name in ("adapter", "curve.png", "grid.png"))
    for init in ("mean", "nearest"):  # the shipped zoo reference serves the baselines
        with pytest.raises(SystemExit) as e:
            main(["finetune", "--concept", "van gogh style", "--seconds", "30", "--max-steps", "1", "--init", init,
                  "--n-train", "8", "--n-test", "4", "--threads", "1", "--out", str(tmp_path / init),
                  "--pairs", str(out / "pairs")])
        assert e.value.code in (0, None), capsys.readouterr().err
