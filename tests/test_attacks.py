"""FGSM and PGD against closed forms on linear classifiers, and their bounds and errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reluscope.attacks import adversarial_accuracy, fgsm, pgd
from reluscope.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")


def linear_binary(d: int = 6, seed: int = 0) -> nn.Linear:
    """A float64 linear classifier with two outputs (logits)."""
    torch.manual_seed(seed)
    return nn.Linear(d, 2).double()


def data(n: int = 40, d: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 2, (n,), generator=gen)
    return x, y


def margins(model: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """logit of the true class minus the other one."""
    out = model(x)
    return (out.gather(1, y[:, None]) - out.gather(1, 1 - y[:, None]))[:, 0].detach()


def margin_direction(model: nn.Linear, y: torch.Tensor) -> torch.Tensor:
    """w_y - w_other for every point: the input gradient of the margin."""
    w = model.weight.detach()
    return w[y] - w[1 - y]


def test_fgsm_equals_closed_form_on_a_linear_model():
    model, (x, y) = linear_binary(), data()
    eps = 0.05
    # closed form: grad_x CE = W^T (softmax(Wx + b) - onehot(y))
    p = torch.softmax(model(x).detach(), dim=1)
    grad = (p - F.one_hot(y, 2).double()) @ model.weight.detach()
    expected = x + eps * grad.sign()
    adv = fgsm(model, x, y, eps)
    assert torch.equal(adv, expected)
    # two classes: the margin drops by exactly eps * ||w_y - w_other||_1, so the loss becomes
    # softplus(-(margin - eps * ||dw||_1))
    drop = eps * margin_direction(model, y).abs().sum(dim=1)
    torch.testing.assert_close(
        margins(model, adv, y), margins(model, x, y) - drop, rtol=0, atol=1e-12
    )
    loss = F.cross_entropy(model(adv), y, reduction="none").detach()
    torch.testing.assert_close(loss, F.softplus(-(margins(model, x, y) - drop)), rtol=1e-12, atol=0)
    assert (loss > F.cross_entropy(model(x), y, reduction="none").detach()).all()


def test_fgsm_single_logit_uses_binary_cross_entropy():
    torch.manual_seed(3)
    model = nn.Linear(5, 1).double()
    x, y = data(30, 5)
    eps = 0.1
    z = model(x).detach()[:, 0]
    # d/dx BCE(sigmoid(z), y) = (sigmoid(z) - y) w
    grad = (torch.sigmoid(z) - y.double())[:, None] * model.weight.detach()
    assert torch.equal(fgsm(model, x, y, eps), x + eps * grad.sign())


def test_pgd_linf_reaches_the_worst_case_of_a_linear_classifier():
    model, (x, y) = linear_binary(), data()
    eps = 0.1
    adv = pgd(model, x, y, eps, step_size=eps / 2, steps=5, seed=4)
    # the worst case in the L_inf ball is the corner x - eps * sign(w_y - w_other)
    dw = margin_direction(model, y)
    torch.testing.assert_close(adv, x - eps * dw.sign(), rtol=0, atol=1e-15)
    drop = margins(model, x, y) - margins(model, adv, y)
    torch.testing.assert_close(drop, eps * dw.abs().sum(dim=1), rtol=1e-12, atol=0)


def test_pgd_l2_reaches_the_worst_case_of_a_linear_classifier():
    model, (x, y) = linear_binary(), data()
    eps = 0.3
    dw = margin_direction(model, y)
    best = eps * dw.norm(dim=1)
    adv = pgd(model, x, y, eps, step_size=eps, steps=2, random_start=False, norm="l2")
    torch.testing.assert_close(adv, x - eps * dw / dw.norm(dim=1, keepdim=True), rtol=0, atol=1e-14)
    # from a random start in the ball, PGD converges to the same point from inside
    adv = pgd(model, x, y, eps, step_size=eps / 4, steps=60, norm="l2", seed=2)
    drop = margins(model, x, y) - margins(model, adv, y)
    assert (drop <= best + 1e-12).all() and (drop >= best * (1 - 1e-3)).all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_perturbation_stays_within_eps_and_bounds(norm):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)).double()
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(64, 8, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (64,), generator=gen)
    eps = 0.2
    for adv, ball in (
        (pgd(model, x, y, eps, 0.05, 10, bounds=(0.0, 1.0), norm=norm), norm),
        (fgsm(model, x, y, eps, bounds=(0.0, 1.0)), "linf"),
    ):
        assert adv.min() >= 0 and adv.max() <= 1
        delta = adv - x
        size = delta.abs().amax(dim=1) if ball == "linf" else delta.norm(dim=1)
        assert (size <= eps + 1e-12).all()
        assert (size > eps / 2).any()
    # tensor bounds per feature
    lo, hi = torch.zeros(8, dtype=torch.float64), torch.full((8,), 1.0, dtype=torch.float64)
    hi[0] = 0.5
    x[:, 0] = x[:, 0].clamp_max(0.5)
    adv = pgd(model, x, y, eps, 0.05, 5, bounds=(lo, hi), norm=norm)
    assert (adv[:, 0] <= 0.5).all() and (adv >= 0).all()


def test_attacks_leave_parameter_gradients_and_mode_alone():
    model, (x, y) = linear_binary(), data()
    model.train()
    pgd(model, x, y, 0.1, 0.05, 3)
    assert all(p.grad is None for p in model.parameters()) and model.training


def test_adversarial_accuracy_is_the_exact_robust_accuracy_of_a_linear_model():
    model, (x, y) = linear_binary(), data(200)
    eps = 0.05
    m = margins(model, x, y)
    # robust iff the margin survives the worst case: m > eps * ||w_y - w_other||_1
    robust = (m > eps * margin_direction(model, y).abs().sum(dim=1)).double()
    result = adversarial_accuracy(
        model, x, labels=y, attack="pgd", eps=eps, step_size=eps / 2, steps=5, batch_size=64
    )
    assert result.value == pytest.approx(robust.mean().item(), abs=1e-15)
    assert result.stderr == pytest.approx(robust.std().item() / 200**0.5, rel=1e-12)
    assert result.extra["clean_accuracy"] == pytest.approx((m > 0).double().mean().item())
    assert result.name == "adv_accuracy" and result.num_points == 200


def test_accuracy_under_attack_is_at_most_clean_accuracy():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 3))
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(100, 4, generator=gen), torch.randint(0, 3, (100,), generator=gen)
    for attack in ("pgd", "fgsm", lambda m, xb, yb: xb + 0.5):
        r = adversarial_accuracy(model, x, labels=y, attack=attack, eps=0.5, batch_size=30)
        assert 0 <= r.value <= r.extra["clean_accuracy"]
    assert adversarial_accuracy(model, x, labels=y, eps=0.0).value == r.extra["clean_accuracy"]


def test_bad_input_gives_clear_errors():
    model, (x, y) = linear_binary(), data()
    with pytest.raises(InputError, match="outside bounds"):
        fgsm(model, x * 3, y, 0.1, bounds=(0, 1))
    with pytest.raises(InputError, match="lo < hi"):
        fgsm(model, x, y, 0.1, bounds=(1, 0))
    with pytest.raises(InputError, match="eps must be"):
        fgsm(model, x, y, -0.1)
    with pytest.raises(InputError, match=r"norm must be one of \['linf', 'l2'\]"):
        pgd(model, x, y, 0.1, 0.01, 3, norm="l1")
    with pytest.raises(InputError, match="steps must be"):
        pgd(model, x, y, 0.1, 0.01, 2.5)
    with pytest.raises(InputError, match="labels range"):
        fgsm(model, x, y + 2, 0.1)
    with pytest.raises(InputError, match="one label per input"):
        fgsm(model, x, y[:-1], 0.1)
    with pytest.raises(InputError, match="attack must be one of"):
        adversarial_accuracy(model, x, labels=y, attack="cw", eps=0.1)
    with pytest.raises(InputError, match="needs eps"):
        adversarial_accuracy(model, x, labels=y, attack="pgd")
