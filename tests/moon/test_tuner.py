"""The α auto-tuner follows its schedule: EWMA, α0 = EWMA/init_factor, linear ramp to alpha_final."""
import pytest

from openood_moon.moon import AlphaTuner


def test_alpha_trajectory_over_a_synthetic_run():
    epochs, warmup, steps, mu = 10, 3, 7, 0.05
    tuner = AlphaTuner(alpha_final=1.0, init_factor=64.0, warmup_epochs=warmup, total_epochs=epochs, ewma_mu=mu)
    ewma, alphas, seen = None, [], 0
    for epoch in range(epochs):
        alphas.append(tuner.start_epoch(epoch))
        for _ in range(steps):
            stat = 2.0 / (1 + seen)                 # a decaying "loss"
            ewma = stat if ewma is None else mu * stat + (1 - mu) * ewma
            tuner.observe(stat)
            seen += 1
            assert tuner.ewma == pytest.approx(ewma)
        if epoch == warmup - 1:
            ewma_at_warmup_end = ewma
    assert alphas[:warmup] == [None] * warmup
    alpha0 = ewma_at_warmup_end / 64.0
    inc = (1.0 - alpha0) / (epochs - 1 - warmup)
    for epoch in range(warmup, epochs):
        assert alphas[epoch] == pytest.approx(alpha0 + (epoch - warmup) * inc)
    assert alphas[-1] == pytest.approx(1.0)


def test_state_round_trip_and_validation():
    a = AlphaTuner(total_epochs=10, warmup_epochs=2)
    a.observe(1.0)
    a.start_epoch(2)
    b = AlphaTuner(total_epochs=10, warmup_epochs=2)
    b.load_state_dict(a.state_dict())
    assert b.start_epoch(3) == a.start_epoch(3)
    with pytest.raises(ValueError, match="warmup_epochs"):
        AlphaTuner(warmup_epochs=5, total_epochs=5)
