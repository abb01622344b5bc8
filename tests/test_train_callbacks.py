"""Trainer callbacks (order of the hooks, early stop and resume, spectral clipping against a
hand-written loop), the forms of training data, and ``ProbeLoop`` in a user's own loop."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from reluscope.data import Dataset
from reluscope.errors import InputError
from reluscope.lowrank import clip_spectral_norms_
from reluscope.nets.zoo import mlp
from reluscope.train import (
    Callback,
    Probe,
    ProbeLoop,
    ProbeRunner,
    Schedule,
    SpectralClip,
    TrainConfig,
    Trainer,
    every,
    probes,
)
from reluscope.train.batches import BatchSampler
from reluscope.train.losses import loss as loss_fn

pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(n: int = 90, d: int = 4, classes: int = 3, seed: int = 0) -> Dataset:
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=gen)
    x = 2 * torch.randn(classes, d, generator=gen)[y] + torch.randn(n, d, generator=gen)
    return Dataset(x.float(), y, "blobs")


def step_probe(schedule: Schedule | None = None) -> Probe:
    return Probe("step", lambda ctx: [dict(metric="step", value=float(ctx.step))], schedule)


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class Log(Callback):
    """Records every hook call as (hook, trainer.step, extra)."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.calls: list[tuple] = []
        self.stop_at = stop_at

    def on_train_start(self, trainer):
        self.calls.append(("start", trainer.step, trainer.model.training))

    def on_step_end(self, trainer, loss):
        self.calls.append(("step_end", trainer.step, loss))

    def on_eval(self, trainer, records):
        self.calls.append(("eval", trainer.step, sorted({r["step"] for r in records})))

    def should_stop(self, trainer):
        return self.stop_at is not None and trainer.step >= self.stop_at

    def on_train_end(self, trainer):
        self.calls.append(("end", trainer.step, trainer.model.training))


# ---------------------------------------------------------------------------- hooks
def test_hooks_run_in_order_with_the_step_they_belong_to():
    log = Log()
    cfg = TrainConfig(steps=5, batch_size=16, lr=0.05)
    trainer = Trainer(
        mlp([4, 8, 3], seed=0),
        blobs(),
        None,
        cfg,
        [step_probe(every(2, 5))],
        progress=False,
        callbacks=[log],
    )
    trainer.fit()
    kinds = [c[0] for c in log.calls]
    assert kinds[0] == "start" and kinds[-1] == "end" and log.calls[-1][2] is False
    assert [c[1] for c in log.calls if c[0] == "step_end"] == [1, 2, 3, 4, 5]
    # on_eval: at the probed steps 0, 2, 4, 5, each after that step's update
    assert [(c[1], c[2]) for c in log.calls if c[0] == "eval"] == [
        (0, [0]),
        (2, [2]),
        (4, [4]),
        (5, [5]),
    ]
    assert kinds.index("eval") < kinds.index("step_end")
    losses = [c[2] for c in log.calls if c[0] == "step_end"]
    assert all(isinstance(v, float) and v > 0 for v in losses)


def test_should_stop_ends_early_and_a_later_fit_goes_on_as_if_never_stopped(tmp_path):
    cfg = TrainConfig(steps=8, batch_size=16, lr=0.05, checkpoint_every=100)

    def trainer(callbacks, run_dir=None):
        return Trainer(
            mlp([4, 8, 3], seed=0),
            blobs(),
            None,
            cfg,
            [step_probe(every(1, 8))],
            run_dir=run_dir,
            progress=False,
            callbacks=callbacks,
        )

    reference = trainer([])
    full = reference.fit()
    stopping = trainer([Log(stop_at=3)], tmp_path)
    early = stopping.fit()
    assert stopping.stopped and stopping.step == 3 and early.step.max() == 3
    assert (tmp_path / "checkpoint.pt").exists()  # the stop is checkpointed
    resumed = trainer([], tmp_path)  # a new process: resumes from step 3
    records = resumed.fit()
    assert resumed.step == 8 and not resumed.stopped
    assert same_state(resumed.model, reference.model)
    assert records.equals(full)


def test_callbacks_must_be_callbacks():
    with pytest.raises(InputError, match="Callback"):
        Trainer(mlp([4, 8, 3]), blobs(), None, TrainConfig(steps=2), callbacks=[print])
    with pytest.raises(InputError, match="max_norm"):
        SpectralClip(0.0)
    with pytest.raises(InputError, match="every"):
        SpectralClip(1.0, every=0)


# ---------------------------------------------------------------------------- spectral clip
def test_spectral_clip_equals_the_hand_written_clipped_loop():
    """The Trainer with SpectralClip takes exactly the steps of a plain Adam loop that clips
    every ``every`` steps and after the last (the loop the low-rank experiments had)."""
    data, steps, every_, bound = blobs(), 7, 3, 0.8
    cfg = TrainConfig(steps=steps, batch_size=16, optimizer="adam", lr=0.02, seed=5)
    model = mlp([4, 16, 16, 3], bias=False, seed=2)
    trainer = Trainer(
        model, data, None, cfg, progress=False, callbacks=[SpectralClip(bound, every_)]
    )
    trainer.fit()

    hand = mlp([4, 16, 16, 3], bias=False, seed=2)
    sampler = BatchSampler(len(data), 16, 5)
    optimizer = torch.optim.Adam(hand.parameters(), lr=0.02)
    hand.train()
    for step in range(steps):
        index = sampler.indices(step)
        optimizer.zero_grad(set_to_none=True)
        loss_fn(hand(data.x[index]), data.y[index], "ce").backward()
        optimizer.step()
        if (step + 1) % every_ == 0 or step + 1 == steps:
            clip_spectral_norms_(hand, bound)
    assert same_state(trainer.model, hand)
    for layer in (0, 2, 4):
        norm = torch.linalg.matrix_norm(trainer.model[layer].weight.double(), ord=2)
        assert norm <= bound * (1 + 1e-5)


# ---------------------------------------------------------------------------- data forms
def test_every_form_of_training_data_trains_alike():
    data, cfg = blobs(), TrainConfig(steps=6, batch_size=16, lr=0.05)
    forms = {
        "tensors": (data.x, data.y),
        "torch dataset": TensorDataset(data.x, data.y),
        "loader": DataLoader(TensorDataset(data.x, data.y), batch_size=7),
        "dict loader": [
            {"x": data.x[i : i + 40], "label": data.y[i : i + 40]} for i in (0, 40, 80)
        ],
    }
    reference = Trainer(mlp([4, 8, 3]), data, data, cfg, [probes.accuracy_loss()], progress=False)
    expected = reference.fit()
    for name, form in forms.items():
        trainer = Trainer(mlp([4, 8, 3]), form, form, cfg, [probes.accuracy_loss()], progress=False)
        assert trainer.fit().equals(expected), name
        assert same_state(trainer.model, reference.model), name
    runner = ProbeRunner(
        [probes.accuracy_loss(splits=("train",))], forms["loader"], default_schedule=every(1, 1)
    )
    assert (
        runner.run(reference.model, 6)[0]["value"]
        == expected.query("step == 6 and metric == 'accuracy' and split == 'train'")["value"].item()
    )


@pytest.mark.parametrize(
    ("train", "fragment"),
    [
        (DataLoader(TensorDataset(torch.zeros(0, 4), torch.zeros(0).long())), "empty"),
        ([torch.zeros(5, 4)], "no labels"),
        ((torch.zeros(5, 4), torch.zeros(5)), "integer class indices"),
        (
            [
                (torch.zeros(5, 4), torch.zeros(5).long()),
                (torch.zeros(5, 3), torch.zeros(5).long()),
            ],
            "different shapes",
        ),
        ("data.csv", "DataLoader"),
    ],
)
def test_bad_training_data_is_a_clear_error(train, fragment):
    with pytest.raises(InputError, match=fragment):
        Trainer(mlp([4, 8, 3]), train, None, TrainConfig(steps=2), progress=False)


# ---------------------------------------------------------------------------- ProbeLoop
def test_probe_loop_records_a_users_loop_without_changing_it(tmp_path):
    data = blobs()

    def train(model: torch.nn.Module, probing: ProbeLoop | None = None) -> torch.nn.Module:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        torch.manual_seed(0)
        for x, y in DataLoader(TensorDataset(data.x, data.y), batch_size=10, shuffle=True):
            model.train()
            optimizer.zero_grad()
            loss_fn(model(torch.nn.functional.dropout(x, 0.1)), y, "ce").backward()
            optimizer.step()
            if probing is not None:
                probing.step()
        return model

    plain = train(mlp([4, 8, 3], seed=0))
    probed = mlp([4, 8, 3], seed=0)
    with ProbeLoop(
        probed, [step_probe()], data, total_steps=9, run_dir=tmp_path / "run"
    ) as probing:
        train(probed, probing)
    assert same_state(plain, probed)  # probes change neither the weights nor the RNG stream
    assert probing.step_count == 9
    assert probing.records["step"].tolist() == sorted(range(10))  # log_steps(9) is every step
    assert probing.records["value"].tolist() == [float(s) for s in range(10)]
    assert (tmp_path / "run" / "records.parquet").exists()
    with pytest.raises(InputError, match="already started"):
        probing.start()


def test_the_lightning_callback_says_how_to_install_lightning(monkeypatch):
    import importlib
    import sys

    for name in ("lightning", "lightning.pytorch", "pytorch_lightning"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "reluscope.train.lightning", raising=False)
    with pytest.raises(InputError, match=r"pip install 'reluscope\[lightning\]'"):
        importlib.import_module("reluscope.train.lightning")
