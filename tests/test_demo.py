import json

import pytest

from weightgen.cli import main
from weightgen.errors import USER_ERRORS
from weightgen.zoo.config import DemoConfig
from weightgen.zoo.demo import run_demo


@pytest.mark.slow
def test_demo_runs_resumes_and_writes_its_outputs(tmp_path):
    config = DemoConfig(out=str(tmp_path / "demo"), concept="pencil sketch", n_base_concepts=2,
                        base_seconds=2, lora_seconds=2)
    summary = run_demo(config)
    assert summary["lora_steps"] >= 1 and summary["lora_params"] > 0
    for key in ("l1", "psnr", "ssim"):
        assert key in summary["base"] and key in summary["lora"]
    assert (tmp_path / "demo" / "lora" / "adapter_config.json").is_file()
    assert (tmp_path / "demo" / "before_after.png").stat().st_size > 0
    base_mtime = (tmp_path / "demo" / "base" / "weightgen.json").stat().st_mtime
    run_demo(config)  # resumes: the base is reused, not retrained
    assert (tmp_path / "demo" / "base" / "weightgen.json").stat().st_mtime == base_mtime
    assert json.loads((tmp_path / "demo" / "summary.json").read_text())["base_concepts"] == summary["base_concepts"]


@pytest.mark.parametrize("kwargs", [{"concept": "  "}, {"lora_seconds": 0}, {"n_base_concepts": 0}])
def test_demo_config_refuses_bad_values(kwargs):
    with pytest.raises(USER_ERRORS):
        DemoConfig(**kwargs)


def test_demo_cli_bad_budget_is_one_error_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--lora-seconds", "-1"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "-1" in err[0]
