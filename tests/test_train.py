"""The trainer's pieces against formulas (schedule, weight decay, losses, batches) and the
trainer's behaviour: reproducibility, parameter scale, no change to the caller's model, probes in user loops, clear errors."""

from __future__ import annotations

import math
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reluscope.data import Dataset
from reluscope.errors import InputError, TrainingDiverged
from reluscope.nets.zoo import mlp
from reluscope.train import (
    Probe,
    ProbeRunner,
    Schedule,
    TrainConfig,
    Trainer,
    build_optimizer,
    every,
    learning_rate,
    log_steps,
)
from reluscope.train.batches import BatchSampler
from reluscope.train.losses import loss as loss_fn
from reluscope.train.losses import point_losses

pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(n: int = 120, d: int = 4, classes: int = 3, seed: int = 0) -> Dataset:
    """Gaussian blobs around class centres."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=gen)
    centres = 2 * torch.randn(classes, d, generator=gen)
    x = centres[y] + torch.randn(n, d, generator=gen)
    return Dataset(x.float(), y, "blobs")


def recorder(name: str, fn, schedule: Schedule | None = None) -> Probe:
    """A probe recording fn(ctx) as metric ``name``."""
    return Probe(name, lambda ctx: [dict(metric=name, value=fn(ctx))], schedule)


# ---------------------------------------------------------------------------- schedule
def test_learning_rate_follows_warmup_and_cosine_formula():
    cfg = TrainConfig(
        steps=110, lr=0.1, warmup_steps=10, warmup_start=0.1, schedule="cosine", min_lr=0.01
    )
    assert learning_rate(0, cfg) == pytest.approx(0.01)  # warmup_start * lr
    assert learning_rate(5, cfg) == pytest.approx(0.1 * (0.1 + 0.9 * 0.5))
    assert learning_rate(10, cfg) == pytest.approx(0.1)  # end of warm-up: lr
    assert learning_rate(35, cfg) == pytest.approx(0.01 + 0.09 * (1 + math.cos(math.pi / 4)) / 2)
    assert learning_rate(60, cfg) == pytest.approx((0.1 + 0.01) / 2)  # half way: the mean
    assert learning_rate(110, cfg) == pytest.approx(0.01)
    constant = cfg.model_copy(update={"schedule": "constant"})
    assert [learning_rate(s, constant) for s in (10, 60, 109)] == [0.1, 0.1, 0.1]


def test_learning_rate_matches_torch_schedulers():
    cfg = TrainConfig(
        steps=60, lr=0.5, warmup_steps=7, warmup_start=0.2, schedule="cosine", min_lr=1e-3
    )
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.2, total_iters=7)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=53, eta_min=1e-3)
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, cosine], milestones=[7])
    torch_lrs = []
    for _ in range(60):
        torch_lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose([learning_rate(s, cfg) for s in range(60)], torch_lrs, rtol=1e-9)


def test_trainer_uses_the_schedule_at_every_step():
    cfg = TrainConfig(
        steps=30, batch_size=16, lr=0.05, warmup_steps=5, schedule="cosine", min_lr=0.001
    )
    trainer = Trainer(mlp([4, 8, 3], seed=0), blobs(), None, cfg, progress=False)
    used = recorder("lr", lambda ctx: trainer.optimizer.param_groups[0]["lr"], every(1, 30))
    trainer.runner.probes.append(used)
    records = trainer.fit()
    # the rate seen at step s (after s updates) is the one of the update from step s - 1
    lrs = records[records.step > 0].set_index("step")["value"]
    expected = [learning_rate(s - 1, cfg) for s in lrs.index]
    np.testing.assert_allclose(lrs.to_numpy(), expected, rtol=0, atol=0)


def test_log_steps_is_the_authors_formula_plus_zero_and_the_end():
    for total in (1000, 10**6, 7):
        authors = np.unique(np.logspace(0, np.log10(total), 50).astype(int))
        assert log_steps(total, 50).steps == frozenset(authors.tolist()) | {0, total}
    assert every(4, 10).sorted() == [0, 4, 8, 10]


# ---------------------------------------------------------------------------- optimiser
def _zero_grad_step(model: nn.Module, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = build_optimizer(model, cfg)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    return before


def test_adamw_decays_weights_by_lr_times_wd_and_leaves_biases():
    model = mlp([3, 5, 2], seed=0).double()
    cfg = TrainConfig(optimizer="adamw", lr=0.1, weight_decay=0.3)
    before = _zero_grad_step(model, cfg)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert torch.equal(p, before[name])
        else:  # zero gradient: the Adam step is 0 and only the decay acts
            torch.testing.assert_close(
                p, before[name] - 0.1 * 0.3 * before[name], rtol=1e-15, atol=0
            )
    model = mlp([3, 5, 2], seed=0).double()
    before = _zero_grad_step(model, cfg.model_copy(update={"decay_biases": True}))
    for name, p in model.named_parameters():
        torch.testing.assert_close(p, before[name] * (1 - 0.03), rtol=1e-15, atol=0)


def test_sgd_and_adam_add_weight_decay_to_the_gradient():
    model = mlp([3, 5, 2], seed=1).double()
    before = _zero_grad_step(model, TrainConfig(optimizer="sgd", lr=0.1, weight_decay=0.3))
    for name, p in model.named_parameters():
        decay = 0 if name.endswith("bias") else 0.03
        torch.testing.assert_close(p, before[name] * (1 - decay), rtol=1e-15, atol=0)
    # Adam's first step normalises the gradient g = wd * w: lr * g / (|g| + 1e-8)
    model = mlp([3, 5, 2], seed=1).double()
    before = _zero_grad_step(model, TrainConfig(optimizer="adam", lr=0.01, weight_decay=0.3))
    for name, p in model.named_parameters():
        g = 0.3 * before[name]
        step = 0 * g if name.endswith("bias") else 0.01 * g / (g.abs() + 1e-8)
        torch.testing.assert_close(p, before[name] - step, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------- losses
def test_mse_on_one_hot_and_cross_entropy_match_hand_computation():
    out = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.3, -0.2]], dtype=torch.float64)
    y = torch.tensor([2, 0])
    hand = ((0.5**2 + 1.0**2 + 1.0**2) + (1.0**2 + 0.3**2 + 0.2**2)) / 6
    assert loss_fn(out, y, "mse").item() == pytest.approx(hand, rel=1e-15)
    assert loss_fn(out, y, "mse").item() == pytest.approx(
        nn.MSELoss()(out, F.one_hot(y, 3).double()).item()
    )
    lse = torch.logsumexp(out, dim=1)
    torch.testing.assert_close(point_losses(out, y, "ce"), lse - out[[0, 1], y])
    # a single output is the logit of class 1
    z, b = torch.tensor([[1.5], [-0.5]], dtype=torch.float64), torch.tensor([1, 1])
    torch.testing.assert_close(point_losses(z, b, "ce"), torch.log1p(torch.exp(-z[:, 0])))
    torch.testing.assert_close(point_losses(z, b, "mse"), (z[:, 0] - 1) ** 2)


def test_one_full_batch_sgd_step_is_the_gradient_step_of_the_mse_loss():
    data = blobs(24)
    cfg = TrainConfig(steps=1, batch_size=24, optimizer="sgd", lr=0.2, loss="mse", dtype="float64")
    model = mlp([4, 6, 3], seed=2)
    reference = mlp([4, 6, 3], seed=2).double()
    trainer = Trainer(model, data, None, cfg, progress=False)
    trainer.fit()
    model = trainer.model
    target = F.one_hot(data.y, 3).double()
    loss = ((reference(data.x.double()) - target) ** 2).sum() / (24 * 3)
    grads = torch.autograd.grad(loss, list(reference.parameters()))
    for p, q, g in zip(model.parameters(), reference.parameters(), grads, strict=True):
        torch.testing.assert_close(p.detach(), q.detach() - 0.2 * g, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------- batches
def test_batches_cover_each_epoch_without_replacement_and_depend_on_the_seed_only():
    sampler = BatchSampler(10, 3, seed=5)
    assert sampler.per_epoch == 3
    for epoch in range(3):
        seen = torch.cat([sampler.indices(3 * epoch + b) for b in range(3)])
        assert len(set(seen.tolist())) == 9  # 9 distinct points; one left over per epoch
    again = BatchSampler(10, 3, seed=5)
    assert all(torch.equal(sampler.indices(s), again.indices(s)) for s in (7, 0, 4))
    assert not torch.equal(BatchSampler(10, 3, seed=6).indices(0), sampler.indices(0))
    assert BatchSampler(4, 100, seed=0).indices(2).tolist() != []  # batch capped at n


# ---------------------------------------------------------------------------- trainer
def test_param_scale_multiplies_a_copy_once_and_leaves_the_callers_model_alone():
    model = mlp([4, 8, 3], seed=0)
    init = [p.detach().clone() for p in model.parameters()]
    seen = []

    def grab(ctx):
        seen.append([p.detach().clone() for p in ctx.model.parameters()])
        return []

    cfg = TrainConfig(steps=3, batch_size=8, param_scale=3.0, dtype="float64")
    probe = [Probe("grab", grab, Schedule(frozenset({0})))]
    first = Trainer(model, blobs(), None, cfg, probe, progress=False)
    second = Trainer(model, blobs(), None, cfg, probe, progress=False)
    first.fit()
    second.fit()
    # both trainers start from 3 x the caller's weights (not 9 x), in float64
    for start in seen:
        assert all(torch.equal(a, 3.0 * b.double()) for a, b in zip(start, init, strict=True))
    # the caller's model: same values, dtype and training flag as before
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), init, strict=True))
    assert next(model.parameters()).dtype == torch.float32 and not model.training
    assert first.model is not model and next(first.model.parameters()).dtype == torch.float64
    state_a, state_b = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert not torch.equal(state_a["0.weight"], 3.0 * init[0].double())  # it did train


def test_runs_are_reproducible_and_probes_do_not_change_the_training():
    cfg = TrainConfig(steps=40, batch_size=16, lr=0.01, weight_decay=0.1, seed=3)
    data = blobs()

    def run(probes):
        trainer = Trainer(
            mlp([4, 16, 16, 3], seed=1), data, blobs(seed=9), cfg, probes, progress=False
        )
        return trainer.fit(), trainer.model.state_dict()

    from reluscope.train import probes as P

    with_probes = [
        P.accuracy_loss(),
        P.local_complexity(n_points=16),
        P.adversarial(0.1, n_points=16),
    ]
    rec_a, state_a = run(with_probes)
    rec_b, state_b = run(with_probes)
    _, state_c = run([])
    pd.testing.assert_frame_equal(rec_a, rec_b, check_exact=True)
    assert all(
        torch.equal(state_a[k], state_b[k]) and torch.equal(state_a[k], state_c[k]) for k in state_a
    )
    assert sorted(rec_a.step.unique()) == log_steps(40, 50).sorted()


def test_accuracy_improves_and_global_rng_is_untouched():
    state = torch.get_rng_state()
    from reluscope.train import probes as P

    trainer = Trainer(
        mlp([4, 16, 3], seed=0),
        blobs(),
        None,
        TrainConfig(steps=60, lr=0.02, batch_size=16),
        [P.accuracy_loss(splits=("train",))],
        progress=True,
    )
    records = trainer.fit()
    acc = records[records.metric == "accuracy"].set_index("step")["value"]
    assert acc[60] > acc[0] and acc[60] > 0.8
    assert torch.equal(torch.get_rng_state(), state)
    assert not trainer.model.training and trainer.step == 60


def test_probe_runner_in_a_users_own_loop():
    data = blobs()
    model = mlp([4, 8, 3], seed=0)
    calls = []
    probe = recorder("norm", lambda ctx: calls.append(ctx.model.training) or float(ctx.step))
    runner = ProbeRunner([probe], data, run_name="mine", default_schedule=every(5, 12))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    state = torch.get_rng_state()
    for step in range(13):
        runner.maybe_run(model, step)
        if step < 12:
            opt.zero_grad()
            F.cross_entropy(model(data.x), data.y).backward()
            opt.step()
    assert torch.equal(torch.get_rng_state(), state) and model.training
    assert calls == [False] * 4
    frame = runner.frame()
    assert frame.step.tolist() == [0, 5, 10, 12] and frame.value.tolist() == [0.0, 5.0, 10.0, 12.0]
    assert set(frame.run) == {"mine"} and list(frame.columns) == [
        "run",
        "step",
        "metric",
        "layer",
        "split",
        "value",
        "stderr",
    ]


def test_records_parquet_roundtrip(tmp_path):
    from reluscope.train import probes as P

    trainer = Trainer(
        mlp([4, 8, 3], seed=0),
        blobs(),
        blobs(seed=1),
        TrainConfig(steps=5, batch_size=8),
        [P.accuracy_loss(), P.weight_norms()],
        run_dir=tmp_path,
        progress=False,
    )
    records = trainer.fit()
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "records.parquet"), records)


# ---------------------------------------------------------------------------- errors
def test_nan_loss_is_a_clear_error_naming_the_step(tmp_path):
    def poison(ctx):
        with torch.no_grad():
            next(ctx.model.parameters())[0, 0] = float("nan")
        return []

    probe = Probe("poison", poison, Schedule(frozenset({3})))
    trainer = Trainer(
        mlp([4, 8, 3], seed=0),
        blobs(),
        None,
        TrainConfig(steps=10, batch_size=8),
        [probe],
        run_dir=tmp_path,
        progress=False,
    )
    with pytest.raises(
        TrainingDiverged, match=r"loss is nan in the update at step 3 .*lower the learning rate"
    ) as caught:
        trainer.fit()
    assert not isinstance(caught.value, InputError)
    assert caught.value.step == 3 and math.isnan(caught.value.loss) and caught.value.lr == 1e-3
    assert (tmp_path / "records.parquet").exists()  # the records so far are kept


def test_bad_setup_gives_clear_errors(tmp_path, monkeypatch):
    data, model = blobs(), mlp([4, 8, 3], seed=0)
    cfg = TrainConfig(steps=2)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="not a writable directory"):
        Trainer(model, data, None, cfg, run_dir=blocker / "run", progress=False)
    with pytest.raises(InputError, match="invalid training config"):
        Trainer(model, data, None, {"steps": 2, "learning_rate": 0.1}, progress=False)
    with pytest.raises(InputError, match="labels range from 0 to 2"):
        Trainer(mlp([4, 8, 2], seed=0), data, None, cfg, progress=False)
    with pytest.raises(InputError, match="cannot take the training inputs"):
        Trainer(mlp([5, 8, 3], seed=0), data, None, cfg, progress=False)
    with pytest.raises(InputError, match="has no labels"):
        Trainer(model, Dataset(data.x, None, "unlabelled"), None, cfg, progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            Trainer(model, data, None, TrainConfig(steps=2, device="cuda"), progress=False)
    with pytest.raises(InputError, match="no schedule"):
        ProbeRunner([recorder("x", lambda ctx: 0.0)], data)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(InputError, match=r"reluscope\[tensorboard\]"):
        Trainer(model, data, None, cfg, run_dir=tmp_path / "tb", tensorboard=True, progress=False)


def test_tensorboard_logs_every_record_and_purges_on_resume(tmp_path, monkeypatch):
    class FakeWriter:
        made: list = []

        def __init__(self, log_dir, purge_step=None):
            self.log_dir, self.purge_step, self.scalars = log_dir, purge_step, []
            FakeWriter.made.append(self)

        def add_scalar(self, tag, value, step):
            self.scalars.append((tag, value, step))

        def close(self):
            pass

    fake = type(sys)("torch.utils.tensorboard")
    fake.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    from reluscope.train import probes as P

    def interrupt(ctx):
        if ctx.step == 6:
            raise KeyboardInterrupt
        return []

    probe_list = [P.accuracy_loss(), Probe("stop", interrupt, every(3, 10))]
    cfg = TrainConfig(steps=10, batch_size=8)

    def trainer():
        return Trainer(
            mlp([4, 8, 3], seed=0),
            blobs(),
            blobs(seed=1),
            cfg,
            probe_list,
            run_dir=tmp_path,
            tensorboard=True,
            default_schedule=every(3, 10),
            progress=False,
        )

    with pytest.raises(KeyboardInterrupt):
        trainer().fit()
    probe_list[1] = Probe("stop", lambda ctx: [], every(3, 10))
    records = trainer().fit()
    first, second = FakeWriter.made
    assert first.log_dir == str(tmp_path / "tensorboard") and first.purge_step is None
    assert second.purge_step == 6
    logged = first.scalars + second.scalars
    expected = [(f"{r.metric}/{r.split}", r.value, r.step) for r in records.itertuples()]
    assert sorted(logged) == sorted(expected)
