"""Checkpoints and resume: a run killed (SIGKILL) or interrupted (Ctrl-C) and then resumed ends
with exactly the records and weights of an uninterrupted run (CPU, same seed)."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from reluscope.data import Dataset
from reluscope.errors import InputError
from reluscope.train import Probe, Schedule, TrainConfig, Trainer, log_steps, probes

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS, EVERY, BLOCK_STEP = 120, 40, 90


def blobs(n: int, seed: int) -> Dataset:
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=gen)
    x = torch.randn(3, 6, generator=gen)[y] + torch.randn(n, 6, generator=gen)
    return Dataset(x.float(), y, "blobs")


def build(
    run_dir,
    block: str | None = None,
    lr: float = 0.01,
    steps: int = STEPS,
    extra_probe: bool = False,
) -> Trainer:
    """A small run whose every random source matters: dropout (global RNG), shuffled batches,
    AdamW state, cosine schedule, init scale, LC noise and PGD starts. With ``block`` (a path),
    the probe "block" creates that file at step BLOCK_STEP and then waits to be killed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Linear(6, 16),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(16, 16),
            nn.ReLU(),
            nn.Linear(16, 3),
        )

    def wait(ctx):
        if block is not None:
            Path(block).touch()
            time.sleep(120)
        return []

    probe_list = [
        probes.accuracy_loss(),
        probes.local_complexity(n_points=24),
        probes.adversarial(0.3, n_points=24),
        probes.weight_norms(),
        Probe("block", wait, Schedule(frozenset({BLOCK_STEP}))),
    ] + ([probes.local_rank(n_points=8)] if extra_probe else [])
    cfg = TrainConfig(
        steps=steps,
        batch_size=16,
        lr=lr,
        weight_decay=0.05,
        param_scale=1.5,
        warmup_steps=10,
        schedule="cosine",
        checkpoint_every=EVERY,
        seed=1,
    )
    schedule = log_steps(steps, 15)
    data = blobs(100, 0), blobs(40, 1)
    return Trainer(
        model, *data, cfg, probe_list, run_dir, default_schedule=schedule, progress=False
    )


def child(run_dir: str, block: str | None = None) -> None:
    """The body of a training process."""
    torch.set_num_threads(1)
    build(run_dir, block).fit()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run: (records, final state dict)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    trainer = build(tmp_path_factory.mktemp("reference"))
    records = trainer.fit()
    torch.set_num_threads(threads)
    return records, {k: v.clone() for k, v in trainer.model.state_dict().items()}


def assert_same_run(records: pd.DataFrame, state: dict, reference) -> None:
    pd.testing.assert_frame_equal(records, reference[0], check_exact=True)
    assert state.keys() == reference[1].keys()
    assert all(torch.equal(state[k], reference[1][k]) for k in state)


@pytest.mark.parametrize("start", ["fork", pytest.param("spawn", marks=pytest.mark.slow)])
def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path, reference, start):
    """Train in a child process, SIGKILL it after its checkpoint at step 80, resume in another
    process. "fork" starts the processes from this one (no import cost; each builds its
    trainer from scratch), "spawn" from fresh interpreters."""
    if start not in mp.get_all_start_methods():
        pytest.skip(f"no {start} start method here")
    context = mp.get_context(start)
    run_dir, ready = tmp_path / "run", tmp_path / "ready"
    killed = context.Process(target=child, args=(str(run_dir), str(ready)))
    killed.start()
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert killed.exitcode is None, f"the child failed with exit code {killed.exitcode}"
        assert time.monotonic() < deadline, "the child never reached the blocking step"
        time.sleep(0.02)
    os.kill(killed.pid, signal.SIGKILL)  # no handler runs
    killed.join()
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == 2 * EVERY
    resumed = context.Process(target=child, args=(str(run_dir),))
    resumed.start()
    resumed.join(timeout=120)
    assert resumed.exitcode == 0
    final = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert final["step"] == STEPS
    assert_same_run(pd.read_parquet(run_dir / "records.parquet"), final["model"], reference)


def test_keyboard_interrupt_in_a_probe_leaves_a_checkpoint(tmp_path, reference):
    trainer = build(tmp_path)

    def interrupt(ctx):
        raise KeyboardInterrupt

    trainer.runner.probes[-1] = Probe("block", interrupt, Schedule(frozenset({BLOCK_STEP})))
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == BLOCK_STEP and not state["probed"]
    assert max(r["step"] for r in state["records"]) < BLOCK_STEP  # the step's probes run again
    resumed = build(tmp_path)
    records = resumed.fit()
    assert_same_run(records, resumed.model.state_dict(), reference)


def test_ctrl_c_during_an_update_checkpoints_after_it(tmp_path, reference):
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT has a custom handler in this test process")
    trainer = build(tmp_path)
    calls = []

    def ctrl_c(module, args):
        if module.training:
            calls.append(1)
            if len(calls) == 30:  # the forward pass of the update from step 29
                os.kill(os.getpid(), signal.SIGINT)

    trainer.model.register_forward_pre_hook(ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 30 and not state["probed"]  # the update finished first
    resumed = build(tmp_path)
    records = resumed.fit()
    assert_same_run(records, resumed.model.state_dict(), reference)


def test_a_finished_run_is_not_trained_again(tmp_path, reference):
    build(tmp_path).fit()
    again = build(tmp_path)
    calls = []
    again.runner.probes[-1] = Probe(
        "block", lambda ctx: calls.append(1) or [], Schedule(frozenset({BLOCK_STEP}))
    )
    assert_same_run(again.fit(), again.model.state_dict(), reference)  # param_scale not re-applied
    assert calls == [] and again.step == STEPS


def test_resume_with_another_config_or_probes_is_a_clear_error(tmp_path):
    build(tmp_path, steps=20).fit()
    with pytest.raises(InputError, match=r"another config \(lr: 0.01 -> 0.02; steps: 20 -> 120\)"):
        build(tmp_path, lr=0.02).fit()
    with pytest.raises(InputError, match="with probes .* not .*local_rank"):
        build(tmp_path, steps=20, extra_probe=True).fit()
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read the checkpoint"):
        build(tmp_path, steps=20).fit()
