"""The four experiments to try: settings that reproduce a lesson, and what to watch for.

Each preset is one or more RunConfigs (run one after another and overlaid when several)
plus the training doctor's finding that names the lesson. Tests run every preset with
these defaults and check the doctor names it.
"""

from __future__ import annotations

from dataclasses import dataclass

from live_training_dashboard.run_config import RunConfig


@dataclass(frozen=True)
class Preset:
    key: str
    title: str
    explanation: str
    watch: str
    runs: tuple[tuple[str, RunConfig], ...]  # (label, config) in the order they train
    # The finding code the doctor must raise, per run label (None: the run must stay healthy).
    expected: tuple[tuple[str, str | None], ...]


PRESETS: dict[str, Preset] = {
    preset.key: preset
    for preset in (
        Preset(
            "overfitting", "1 · Overfitting",
            "A large MLP (512×3) trains on 5% of a noisy spiral with a small batch and no regularisation.",
            "Watch train loss keep falling towards zero while validation loss turns upwards after ~15 epochs: "
            "the gap between the two curves is the model memorising its 60 training points.",
            (("512×3 on 60 points", RunConfig(hidden_sizes=(512, 512, 512), batch_size=8, train_fraction=0.05,
                                              noise=0.5, lr=1e-3, epochs=150)),),
            (("512×3 on 60 points", "overfitting"),),
        ),
        Preset(
            "learning_rate", "2 · Learning-rate comparison",
            "The same MLP trained three times with Adam at learning rates 0.001, 0.01 and 0.1, one after another.",
            "Compare the overlaid curves: 0.001 needs several epochs to get where 0.01 is after one, and 0.1 jumps "
            "around and kills most ReLUs (see the Health panel and the layer table's dead %).",
            tuple((f"lr {lr:g}", RunConfig(lr=lr, epochs=20)) for lr in (0.001, 0.01, 0.1)),
            (("lr 0.001", None), ("lr 0.01", None), ("lr 0.1", "dead_relus")),
        ),
        Preset(
            "gradient_flow", "3 · Gradient flow",
            "A deep 128×4 network with sigmoid activations trained by plain SGD (lr 1). Switch the activation "
            "to relu and train again to compare.",
            "Watch the per-layer gradient norms: fc1's is about a thousand times smaller than the output layer's, "
            "so the first layers barely learn and the loss stays flat.",
            (("sigmoid 128×4", RunConfig(hidden_sizes=(128, 128, 128, 128), activation="sigmoid", optimizer="sgd",
                                         lr=1.0, momentum=0.0, epochs=10)),),
            (("sigmoid 128×4", "vanishing_gradients"),),
        ),
        Preset(
            "scheduler", "4 · Scheduler effects",
            "The same GELU MLP trained twice with Adam at lr 0.03: once with a constant learning rate, once with "
            "CosineAnnealing down to zero.",
            "Compare the per-batch loss: at a constant, high LR it keeps bouncing (often on a plateau); the cosine schedule "
            "shrinks the steps and the loss settles much lower. Look at the LR schedule chart of each run.",
            (("constant lr", RunConfig(lr=0.03, epochs=30, activation="gelu")),
             ("cosine", RunConfig(lr=0.03, epochs=30, activation="gelu", scheduler="cosine"))),
            (("constant lr", "noisy_plateau"), ("cosine", None)),
        ),
    )
}
