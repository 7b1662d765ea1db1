"""The α auto-tuner against the released ``extra_c_loss`` (StevenBoys/MOON 863f49a), transcribed below."""
import pytest

from openood_moon.moon import AlphaTuner


class ReleasedAlpha:
    """``extra_c_loss.__call__``'s α bookkeeping, called once per training batch with the 1-based epoch.

    Warm-up (epoch <= learn_epochs): fold the statistic into the EWMA, no α. After it: fold the statistic
    first; on the first such call ``α = ewma / init_factor``, ``inc = (final - α) / (total - epoch)``;
    on the first call of each later epoch ``α += inc``. Returns the α this batch's loss uses.
    """

    def __init__(self, learn_epochs, total_epochs, alpha_final, init_factor, mu=0.05):
        self.learn, self.total, self.final, self.factor, self.mu = learn_epochs, total_epochs, alpha_final, init_factor, mu
        self.ewma = self.alpha = self.inc = self.set_epoch = None

    def __call__(self, stat, epoch):
        self.ewma = stat if self.ewma is None else self.mu * stat + (1 - self.mu) * self.ewma
        if epoch <= self.learn:
            return None
        if self.alpha is None:
            self.alpha = self.ewma / self.factor
            self.inc = (self.final - self.alpha) / (self.total - epoch)
            self.set_epoch = epoch
        elif epoch > self.set_epoch:
            self.alpha = self.alpha + self.inc
            self.set_epoch = epoch
        return self.alpha


@pytest.mark.parametrize("epochs,warmup,steps", [(12, 5, 7), (10, 3, 1), (6, 1, 4)])
def test_alpha_of_every_step_equals_the_released_loss(epochs, warmup, steps):
    tuner = AlphaTuner(alpha_final=1.0, init_factor=64.0, warmup_epochs=warmup, total_epochs=epochs)
    released = ReleasedAlpha(warmup, epochs, 1.0, 64.0)
    seen, compared = 0, 0
    for epoch in range(epochs):
        tuner.start_epoch(epoch)
        for _ in range(steps):
            stat = 2.0 / (1 + seen) + 0.3          # a decaying "loss": α0 depends on which steps are folded in
            seen += 1
            expected = released(stat, epoch + 1)
            got = tuner.observe(stat)
            if expected is None:
                assert got is None
            else:
                assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)
                compared += 1
            assert tuner.ewma == pytest.approx(released.ewma, rel=1e-12)
    assert compared == (epochs - warmup) * steps
    assert tuner.alpha == pytest.approx(1.0)


def test_start_epoch_returns_the_epochs_alpha_once_alpha0_is_known():
    tuner = AlphaTuner(alpha_final=1.0, init_factor=10.0, warmup_epochs=1, total_epochs=4)
    assert tuner.start_epoch(0) is None
    tuner.observe(5.0)
    assert tuner.start_epoch(1) == pytest.approx(0.5)          # provisional: before epoch 1's first statistic
    alpha0 = tuner.observe(7.0)                                # 0.05·7 + 0.95·5 = 5.1 → 0.51
    assert alpha0 == pytest.approx(0.51)
    assert tuner.start_epoch(2) == pytest.approx(0.51 + (1 - 0.51) / 2)
    assert tuner.start_epoch(3) == pytest.approx(1.0)


def test_state_round_trip_and_validation():
    a = AlphaTuner(total_epochs=10, warmup_epochs=2)
    a.start_epoch(0)
    a.observe(1.0)
    a.start_epoch(2)
    a.observe(3.0)
    b = AlphaTuner(total_epochs=10, warmup_epochs=2)
    b.load_state_dict(a.state_dict())
    assert b.start_epoch(3) == a.start_epoch(3)
    assert b.observe(2.0) == a.observe(2.0)
    with pytest.raises(ValueError, match="warmup_epochs"):
        AlphaTuner(warmup_epochs=5, total_epochs=5)
