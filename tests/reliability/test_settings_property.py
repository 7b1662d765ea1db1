"""Property-based: random values of random types for every settings key are accepted or refused with
ConfigError — never another exception — and what is accepted builds a trainer. The relations
between the epoch counts, MOON's switches and the optimizer follow the rules written out here."""
import dataclasses
import math

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings as hyp_settings, strategies as st

from openood_moon.config import ConfigError
from openood_moon.moon import MoonNet
from openood_moon.networks import SmallCNN
from openood_moon.settings import TrainSettings, default_config
from openood_moon.trainer import MoonTrainer

KEYS = [(section, key) for section, values in default_config().items() if isinstance(values, dict)
        for key in values] + [(None, "seed")]
LOADER = [(torch.zeros(4, 1, 28, 28), torch.tensor([0, 1, 2, 3]))] * 2      # two steps per epoch
EDGES = [0, 1, -1, 2, 3, 0.0, 1.0, -1.0, 0.5, 0.999, 1e-12, 1.5, 2.5, 2 ** 32, 2 ** 32 - 1, 10 ** 30,
         1e300, float("nan"), float("inf"), -float("inf"), True, False, None, "", "3", "0.5", "5e-4",
         "nan", "abc", "msp", "rigl", "erk", "uniform", "official", "default", [], {}, ["msp"], ["msp", "msp"],
         {"knn": {"k": 5}}, {"knn": 5}, {"knn": {3: 1}}, [1, 2], {"a": None}]
LEAVES = (st.none() | st.booleans() | st.integers(-10 ** 20, 10 ** 20) | st.floats() | st.text(max_size=6)
          | st.sampled_from(EDGES))
VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=4) | st.sampled_from(["knn", "k"]), inner, max_size=3),
                      max_leaves=6)
FAST = hyp_settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def declared_type(key):
    """The field's type: its ``metadata['type']`` (optional keys, default None), else its default's."""
    section, name = key
    owner = getattr(TrainSettings(), section) if section else TrainSettings()
    field = next(f for f in dataclasses.fields(owner) if f.name == name)
    return field.metadata.get("type") or type(getattr(owner, name))


def small_net(settings):
    backbone = SmallCNN(6, in_channels=1, width=4, feature_size=8)
    return MoonNet(backbone) if settings.uses_unknown else backbone


def parse(cfg):
    """TrainSettings, or None when refused with ConfigError (any other exception fails the test)."""
    try:
        return TrainSettings.from_config(cfg)
    except ConfigError as err:
        assert str(err)
        return None


def builds_a_trainer(settings):
    try:
        MoonTrainer(small_net(settings), LOADER, settings)
    except ConfigError:                # settings the trainer alone can judge (e.g. the official preset's
        pass                           # snapshot rule needs the steps per epoch)


@FAST
@given(st.sampled_from(KEYS), VALUES)
def test_any_value_of_any_type_for_any_key_is_accepted_or_refused_with_config_error(key, value):
    accepted_or_refused(key, value)


def test_every_edge_value_for_every_key_is_accepted_or_refused_with_config_error():
    for key in KEYS:
        for value in EDGES:
            accepted_or_refused(key, value)


def accepted_or_refused(key, value):
    cfg = default_config()
    section, name = key
    (cfg[section] if section else cfg)[name] = value
    parsed = parse(cfg)
    if parsed is None:
        return
    got = getattr(getattr(parsed, section) if section else parsed, name)
    assert got is None and value is None or type(got) is declared_type(key), (key, value, got)
    if isinstance(got, float):
        assert math.isfinite(got)
    builds_a_trainer(parsed)


@pytest.mark.parametrize("value", [None, 5, "x", [1]])
def test_a_section_that_is_not_a_mapping_is_refused(value):
    for section in ("optimizer", "sparse", "moon", "evaluation"):
        cfg = default_config()
        cfg[section] = value
        if value is None:
            assert parse(cfg) is not None                              # absent: the defaults
        else:
            with pytest.raises(ConfigError, match=f"^{section} must be a mapping of keys to values"):
                TrainSettings.from_config(cfg)


def expected_valid(e, w, v, enabled, unknown, vote, momentum, nesterov, end, density, alpha):
    """The rules as the README states them, written out independently of settings.py."""
    moon_loss, voting = enabled and unknown, enabled and vote
    return (e >= 1 and w >= 0 and v >= 0 and 0 <= momentum < 1 and (momentum > 0 or not nesterov)
            and 0 <= end <= 1 and 0 < density <= 1 and alpha > 0
            and (not moon_loss or 1 <= w < e) and (not voting or v < e)      # vote_epochs 0: no vote
            and (not (moon_loss and voting) or w + v <= e))


@FAST
@given(e=st.integers(-1, 7), w=st.integers(-1, 7), v=st.integers(-1, 7), enabled=st.booleans(),
       unknown=st.booleans(), vote=st.booleans(), momentum=st.sampled_from([0.0, 0.5, 0.9, 1.0, -0.1]),
       nesterov=st.booleans(), end=st.sampled_from([-0.1, 0.0, 0.5, 0.75, 1.0, 1.1]),
       density=st.sampled_from([-0.1, 0.0, 0.05, 0.5, 1.0, 1.01]), alpha=st.sampled_from([-1.0, 0.0, 1e-6, 1.0]))
@example(e=3, w=1, v=1, enabled=True, unknown=True, vote=True, momentum=0.0, nesterov=True, end=0.75,
         density=0.1, alpha=1.0)                                   # Nesterov without momentum
@example(e=3, w=2, v=1, enabled=True, unknown=True, vote=True, momentum=0.9, nesterov=True, end=0.75,
         density=0.1, alpha=1.0)                                   # warm-up + vote == epochs: accepted
@example(e=3, w=2, v=2, enabled=True, unknown=True, vote=True, momentum=0.9, nesterov=True, end=0.75,
         density=0.1, alpha=1.0)                                   # the vote would average a warm-up model
@example(e=3, w=2, v=2, enabled=True, unknown=True, vote=False, momentum=0.9, nesterov=True, end=0.75,
         density=0.1, alpha=1.0)                                   # no vote: no relation
@example(e=1, w=0, v=0, enabled=True, unknown=False, vote=True, momentum=0.0, nesterov=False, end=0.0,
         density=0.05, alpha=1e-6)                                 # vote_epochs 0 switches the vote off
def test_relations_between_epochs_moon_switches_and_optimizer(e, w, v, enabled, unknown, vote, momentum, nesterov,
                                                              end, density, alpha):
    cfg = default_config()
    cfg["optimizer"].update(num_epochs=e, momentum=momentum, nesterov=nesterov)
    cfg["moon"].update(warmup_epochs=w, vote_epochs=v, enabled=enabled, unknown_loss=unknown, vote=vote,
                       alpha_final=alpha)
    cfg["sparse"].update(end=end, density=density)
    parsed = parse(cfg)
    assert (parsed is not None) == expected_valid(e, w, v, enabled, unknown, vote, momentum, nesterov, end,
                                                  density, alpha)
    if parsed is not None:
        builds_a_trainer(parsed)


def test_the_topology_freezes_before_the_vote_whatever_sparse_end_says():
    """Decision: ``sparse.end`` past the vote's start is accepted, and the trainer freezes the masks
    at the vote's start (2 steps/epoch, 5 epochs, 2 vote epochs: step 6 of 10)."""
    cfg = default_config()
    cfg["optimizer"]["num_epochs"] = 5
    cfg["moon"].update(warmup_epochs=1, vote_epochs=2)
    cfg["sparse"]["end"] = 1.0
    settings = TrainSettings.from_config(cfg)
    trainer = MoonTrainer(small_net(settings), LOADER, settings)
    assert trainer.end_step == (5 - 2) * 2
