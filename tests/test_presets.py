"""Every preset, run with its own defaults, shows its lesson and the doctor names it."""

import pytest

from live_training_dashboard.diagnostics import diagnose
from live_training_dashboard.presets import PRESETS
from live_training_dashboard.run_config import validate
from live_training_dashboard.training_setup import build_training


@pytest.mark.parametrize("key", list(PRESETS))
def test_preset_reproduces_its_lesson(key):
    preset = PRESETS[key]
    expected = dict(preset.expected)
    finals, early = {}, {}
    for label, config in preset.runs:
        assert validate(config) == {}
        setup = build_training(config, device="cpu")
        setup.fit()
        snapshot = setup.monitor.history.snapshot()
        codes = [f.code for f in diagnose(snapshot)]
        if expected[label] is None:
            assert codes == [], (label, codes)
        else:
            assert expected[label] in codes, (label, codes)
        finals[label] = snapshot.epoch("train_loss")[-1]
        early[label] = snapshot.epoch("train_loss")[:5].mean()
    if key == "scheduler":
        assert finals["cosine"] < 0.25 * finals["constant lr"]
    if key == "learning_rate":
        assert early["lr 0.01"] < 0.5 * early["lr 0.001"]  # the low rate learns slowly
