"""Resumable training: a run stopped and resumed ends where an uninterrupted one does."""

import pytest
import torch

from gan.base import build_models, state_dir_for, train_base
from gan.config import BaseTrainConfig, DiscriminatorConfig, GanTrainConfig, GeneratorConfig
from gan.data import PairedData
from gan.trainer import Pix2PixTrainer
from gan.train_state import read_state_meta
from weightgen.errors import USER_ERRORS
from weightgen.pairs.synthetic import write_synthetic_pairs


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_synthetic_pairs(tmp_path_factory.mktemp("pairs"), ["warm sepia"], n_train=6, n_test=2, image_size=16)


def _config(steps: int, lr: float = 2e-4) -> BaseTrainConfig:
    return BaseTrainConfig(generator=GeneratorConfig(image_size=16, base_channels=4, n_res_blocks=1, attention_heads=1),
                           discriminator=DiscriminatorConfig(base_channels=4, n_layers=2),
                           train=GanTrainConfig(batch_size=2, max_steps=steps, eval_every=2, lr=lr, cpu=True))


def _trainer(pairs, config: BaseTrainConfig, state_dir=None) -> Pix2PixTrainer:
    g, d = build_models(config)
    return Pix2PixTrainer(g, d, PairedData.load(pairs), config.train, progress=False,
                          state_dir=None if state_dir is None else str(state_dir))


def test_stopped_and_resumed_run_matches_an_uninterrupted_one(pairs, tmp_path):
    straight = _trainer(pairs, _config(6))
    straight.run_loop()
    first = _trainer(pairs, _config(3), tmp_path / "state")
    first.run_loop()  # "killed" after step 3: its last save is what a rerun finds
    assert read_state_meta(tmp_path / "state")["step"] == 3
    resumed = _trainer(pairs, _config(6), tmp_path / "state")  # a longer budget extends the saved run
    assert resumed.resumed is not None and resumed.step == 3
    resumed.run_loop()
    for (name, a), b in zip(straight.unwrapped_generator.state_dict().items(),
                            resumed.unwrapped_generator.state_dict().values()):
        assert torch.equal(a, b), name
    assert [r["step"] for r in straight.history] == [0, 2, 4, 6]
    assert [r["step"] for r in resumed.history] == [0, 2, 3, 4, 6]  # the first run's own end record is kept
    assert resumed.history[-1]["metrics"] == pytest.approx(straight.history[-1]["metrics"])


def test_a_state_from_other_settings_is_refused(pairs, tmp_path):
    _trainer(pairs, _config(2), tmp_path / "state").run_loop()
    with pytest.raises(USER_ERRORS, match=r"other settings \(lr\).*delete the folder"):
        _trainer(pairs, _config(4, lr=1e-3), tmp_path / "state")


def test_train_base_resumes_and_cleans_up(pairs, tmp_path):
    out = tmp_path / "base"
    state = state_dir_for(out)
    _trainer(pairs, _config(2), state).run_loop()  # what a killed `train_base(..., resumable=True)` leaves
    history = train_base(pairs, None, _config(4), out, progress=False, resumable=True)
    assert [r["step"] for r in history] == [0, 2, 4]  # steps 1-2 came from the state, not redone
    assert (out / "weightgen.json").is_file() and not state.exists()
