"""``reluscope.train.lightning.ProbeCallback`` in a tiny PyTorch Lightning run: the probes run
at Lightning's global steps on the schedule, measure the module as it is at that step, reach
the loggers, and do not change the training."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

pl = pytest.importorskip(
    "lightning.pytorch", reason="lightning is not installed (pip install 'reluscope[lightning]')"
)

from reluscope.nets.zoo import mlp  # noqa: E402
from reluscope.train import Probe, every, log_steps, probes  # noqa: E402
from reluscope.train.lightning import ProbeCallback  # noqa: E402
from reluscope.train.losses import correct  # noqa: E402

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*"),  # inside Lightning 2.6 with torch 2.13
]


class Classifier(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = mlp([4, 16, 3], seed=0).train()

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class MemoryLogger(pl.loggers.Logger):
    def __init__(self) -> None:
        super().__init__()
        self.logged: list[tuple[int, dict]] = []

    @property
    def name(self):
        return "memory"

    @property
    def version(self):
        return 0

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.logged.append((step, dict(metrics)))


def data(n: int = 60):
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (n,), generator=gen)
    x = 2 * torch.randn(3, 4, generator=gen)[y] + torch.randn(n, 4, generator=gen)
    return x, y


def fit(callbacks, logger=False, max_steps=12) -> Classifier:
    x, y = data()
    module = Classifier()
    trainer = pl.Trainer(
        max_steps=max_steps,
        log_every_n_steps=1,
        callbacks=callbacks,
        logger=logger,
        accelerator="cpu",
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=10))
    return module


def test_probe_callback_runs_probes_at_lightning_steps():
    x, y = data()
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def snapshot(ctx):
        snapshots[ctx.step] = {k: v.clone() for k, v in ctx.model.state_dict().items()}
        return []

    callback = ProbeCallback(
        [
            probes.accuracy_loss(splits=("train",)),
            probes.local_complexity(splits=("train",), n_points=8, schedule=every(12, 12)),
            Probe("weights", snapshot, every(4, 12)),
        ],
        DataLoader(TensorDataset(x, y), batch_size=10),
    )
    logger = MemoryLogger()
    module = fit([callback], logger)
    records = callback.records
    accuracy = records[records.metric == "accuracy"].set_index("step")["value"]
    assert sorted(accuracy.index) == log_steps(12).sorted()  # default: log_steps(max_steps)
    assert sorted(snapshots) == [0, 4, 8, 12]
    # the records measure the module as it was at their step
    for step, state in snapshots.items():
        reference = Classifier()
        reference.load_state_dict(state)
        with torch.no_grad():
            hits = correct(reference(x), y).double().mean().item()
        assert accuracy[step] == pytest.approx(hits, abs=1e-12)
    assert accuracy[12] == pytest.approx(correct(module(x), y).double().mean().item())
    lc = records[(records.metric == "lc") & records.layer.isna()]
    assert lc.step.tolist() == [0, 12] and (lc.value > 0).all()  # traced through the module
    logged = {
        (step, key): value for step, metrics in logger.logged for key, value in metrics.items()
    }
    for row in records[records.metric == "loss"].itertuples():
        assert logged[(row.step, "loss/train")] == row.value
    # probes change nothing in the training
    plain = fit([])
    for a, b in zip(plain.parameters(), module.parameters(), strict=True):
        assert torch.equal(a, b)


def test_probe_callback_needs_a_known_length_or_a_schedule():
    x, y = data()
    from reluscope.errors import InputError

    callback = ProbeCallback([probes.accuracy_loss(splits=("train",))], (x, y))
    x_, y_ = data()
    module = Classifier()
    trainer = pl.Trainer(
        max_epochs=-1,
        max_steps=-1,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader(TensorDataset(x_, y_), batch_size=10)
    with pytest.raises(InputError, match="schedule="):
        trainer.fit(module, loader)
