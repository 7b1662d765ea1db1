"""MOON's loss and its gradient against a hand computation (numpy) on a 4-sample batch."""
import numpy as np
import pytest
import torch

from openood_moon.moon import moon_loss, tuner_statistic

# K = 3 classes + unknown (index 3). Samples 0, 1 correct; 2 wrong; 3 predicts "unknown" (wrong).
LOGITS = np.array([[2.0, 0.5, -1.0, -0.5],
                   [0.1, 1.5, 0.3, -2.0],
                   [1.2, 0.2, 0.1, 0.4],
                   [0.3, -0.2, 0.5, 1.7]])
TARGET = np.array([0, 1, 2, 1])


def hand(alpha):
    z = LOGITS - LOGITS.max(1, keepdims=True)
    s = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    h = -np.log(s[np.arange(4), TARGET])
    p = s[:, 3]
    c = (LOGITS.argmax(1) == TARGET).astype(float)
    w = c + (1 - c) * (1 + alpha / (1 + alpha * p))
    loss = np.mean(h * w)
    onehot_y, onehot_k = np.eye(4)[TARGET], np.eye(4)[[3] * 4]
    dh = s - onehot_y                                            # dh/dz
    dw_dp = (1 - c) * (-alpha ** 2 / (1 + alpha * p) ** 2)
    dp = p[:, None] * (onehot_k - s)                             # dp/dz
    grad = (w[:, None] * dh + (h * dw_dp)[:, None] * dp) / 4
    return loss, grad, c


@pytest.mark.parametrize("alpha", [0.02, 0.5, 1.0])
def test_loss_and_gradient_match_hand_computation(alpha):
    loss_ref, grad_ref, c = hand(alpha)
    assert c.tolist() == [1, 1, 0, 0]
    z = torch.tensor(LOGITS, requires_grad=True)
    loss = moon_loss(z, torch.tensor(TARGET), alpha)
    loss.backward()
    assert loss.item() == pytest.approx(loss_ref, rel=1e-12)
    np.testing.assert_allclose(z.grad.numpy(), grad_ref, rtol=1e-10, atol=1e-12)


def test_gradient_flows_through_the_weight():
    _, grad_ref, _ = hand(1.0)
    z = torch.tensor(LOGITS, requires_grad=True)
    # the same loss with w detached has a different gradient on the misclassified rows
    log_prob = torch.log_softmax(z, 1)
    h = -log_prob[torch.arange(4), torch.tensor(TARGET)]
    p = log_prob[:, 3].exp()
    c = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    w = (c + (1 - c) * (1 + 1.0 / (1 + p))).detach()
    (h * w).mean().backward()
    assert not np.allclose(z.grad.numpy()[2:], grad_ref[2:])
    np.testing.assert_allclose(z.grad.numpy()[:2], grad_ref[:2], rtol=1e-10)


def test_warmup_is_plain_cross_entropy_over_k_plus_1():
    z, y = torch.tensor(LOGITS), torch.tensor(TARGET)
    assert moon_loss(z, y, None).item() == pytest.approx(torch.nn.functional.cross_entropy(z, y).item())


def test_tuner_statistic_is_mean_of_known_probability_times_ce():
    z = LOGITS - LOGITS.max(1, keepdims=True)
    s = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    expected = np.mean((1 - s[:, 3]) * -np.log(s[np.arange(4), TARGET]))
    assert tuner_statistic(torch.tensor(LOGITS), torch.tensor(TARGET)) == pytest.approx(expected)
