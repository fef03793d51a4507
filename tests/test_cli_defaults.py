"""Each CLI default is its config's default: a number changed in a dataclass changes the CLI too."""

from dataclasses import MISSING, fields

import click
import pytest
import typer

from gan.config import ConvergenceConfig, LoraSettings
from prompts.build import BuildConfig
from weightgen.bench.config import BenchConfig
from weightgen.cli import app
from weightgen.finetune.config import FinetuneConfig
from weightgen.generator.config import DiffusionConfig, GeneratorTrainConfig
from weightgen.pairs.config import PairsConfig
from weightgen.pairs.editors.config import InstructPix2PixConfig
from weightgen.zoo.config import (
    DemoConfig,
    ZooConfig,
    default_base_train,
    default_zoo_train,
)

# verb -> the configs its options fill (a class: its field defaults; an instance: a named recipe such as
# the zoo's), and the CLI names that differ from the field names
VERBS = {
    ("finetune",): ([FinetuneConfig], {}),
    ("train",): ([GeneratorTrainConfig(), DiffusionConfig()], {}),
    ("pairs",): ([PairsConfig, InstructPix2PixConfig], {}),
    ("bench",): ([BenchConfig], {}),
    ("demo",): ([DemoConfig()], {"base_concepts": "n_base_concepts"}),
    ("train-base",): ([default_base_train().train, default_base_train().generator], {"steps": "max_steps"}),
    ("zoo", "base"): ([default_base_train().train, default_base_train().generator], {"steps": "max_steps"}),
    ("train-lora",): ([default_zoo_train(), LoraSettings()], {"steps": "max_steps"}),
    ("zoo", "build"): ([ZooConfig, default_zoo_train(), LoraSettings(), ConvergenceConfig],
                       {"steps": "max_steps", "check_every": "every"}),
    ("prompts", "build"): ([BuildConfig()], {}),
}


def _command(path: tuple[str, ...]) -> click.Command:
    cmd = typer.main.get_command(app)
    ctx = click.Context(cmd)
    for name in path:
        cmd = cmd.get_command(ctx, name)
    return cmd


def _config_default(configs, name: str):
    for config in configs:
        for f in fields(config):
            if f.name != name:
                continue
            if not isinstance(config, type):
                return getattr(config, name)
            return f.default_factory() if f.default_factory is not MISSING else f.default
    return MISSING


@pytest.mark.parametrize("path", list(VERBS), ids=" ".join)
def test_option_defaults_are_the_configs_defaults(path):
    configs, aliases = VERBS[path]
    checked = 0
    for param in _command(path).params:
        if param.param_type_name != "option" or param.default is None:
            continue
        expected = _config_default(configs, aliases.get(param.name, param.name))
        if expected is MISSING or expected is None or isinstance(expected, (dict, list)):
            continue
        default = param.default
        if isinstance(expected, tuple):  # a list option, or one comma-separated string
            default = tuple(default.split(",")) if isinstance(default, str) else tuple(default)
        assert default == expected or str(default) == str(expected), (
            f"weightgen {' '.join(path)} --{param.name.replace('_', '-')} defaults to {default!r}, "
            f"its config to {expected!r}")
        checked += 1
    assert checked >= 2, f"no option of weightgen {' '.join(path)} matched its configs: the table is stale"

