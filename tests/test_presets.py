"""Every preset, run with its own defaults, shows its lesson and the doctor names it."""

import dataclasses

import pytest

from live_training_dashboard.diagnostics import diagnose
from live_training_dashboard.presets import PRESETS
from live_training_dashboard.run_config import validate
from live_training_dashboard.training_setup import build_training


def train(config):
    setup = build_training(config, device="cpu")
    setup.fit()
    return setup.monitor.history.snapshot()


@pytest.mark.parametrize("key", [key for key in PRESETS if key != "scheduler"])
def test_preset_reproduces_its_lesson(key):
    preset = PRESETS[key]
    expected = dict(preset.expected)
    early = {}
    for label, config in preset.runs:
        assert validate(config) == {}
        snapshot = train(config)
        codes = [f.code for f in diagnose(snapshot)]
        if expected[label] is None:
            assert codes == [], (label, codes)
        else:
            assert expected[label] in codes, (label, codes)
        early[label] = snapshot.epoch("train_loss")[:5].mean()
    if key == "learning_rate":
        assert early["lr 0.01"] < 0.5 * early["lr 0.001"]  # the low rate learns slowly


def test_scheduler_preset_ends_lower_with_cosine_and_the_doctor_names_the_bouncing_constant_rate():
    """Adam at a constant lr 0.03 is chaotic: whether its last third plateaus depends on the seed
    and on the CPU's float rounding (seed 0 plateaus on a Xeon, keeps improving on an EPYC; on a
    Xeon on 2026-12-07 it bounced back above its starting loss, "stalled" too, and seed 1's cosine
    run overfit), each far from the doctor's thresholds. So: the lesson (cosine ends far lower) on
    every seed, the doctor names the plateau on at least one of three, the constant rate's findings
    are about its bouncing only, and the cosine run is never told its steps are too large."""
    preset = PRESETS["scheduler"]
    expected = dict(preset.expected)
    named = []
    for seed in (0, 1, 2):
        finals, codes = {}, {}
        for label, config in preset.runs:
            config = dataclasses.replace(config, seed=seed)
            assert validate(config) == {}
            snapshot = train(config)
            finals[label] = snapshot.epoch("train_loss")[-1]
            codes[label] = [f.code for f in diagnose(snapshot)]
        assert not set(codes["cosine"]) & {"noisy_plateau", "stalled", "exploding_gradients", "diverged"}, (seed, codes)
        assert set(codes["constant lr"]) <= {"noisy_plateau", "stalled"}, (seed, codes)  # the bouncing, nothing else
        # Measured 0.12-0.32 (EPYC, seeds 0-2): the cosine run ends at least twice as low.
        assert finals["cosine"] < 0.5 * finals["constant lr"], (seed, finals)
        named.append(expected["constant lr"] in codes["constant lr"])
    assert any(named), named
