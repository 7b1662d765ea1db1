"""Postprocessor registry: contract over every name, OpenOOD-equivalent scores, sign convention."""

import numpy as np
import pytest
import torch
from torch import nn

from openood_moon.engines.standalone import detectors as det
from openood_moon.evaluation.outputs import collect_outputs
from openood_moon.evaluation.metrics import auroc
from openood_moon.moon.scores import moon_confidence

from .tiny_net import D, F, K, TinyNet


def toy_data(n_per_class, seed, ood=False):
    """ID: class c at 4 e_c + N(0, 0.3^2); far-OOD: N(0, 0.3^2) around the origin (label -1)."""
    g = torch.Generator().manual_seed(seed)
    if ood:
        return 0.3 * torch.randn(n_per_class * K, D, generator=g), -torch.ones(n_per_class * K).long()
    y = torch.arange(K).repeat_interleave(n_per_class)
    x = 4 * nn.functional.one_hot(y, D).float() + 0.3 * torch.randn(len(y), D, generator=g)
    return x, y


def outputs(net, x, y):
    return collect_outputs(net, [(x, y)])


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "moon"])
def setup(request):
    net = TinyNet(unknown=request.param).eval()
    return net, {
        "train": outputs(net, *toy_data(40, 0)),
        "val": outputs(net, *toy_data(20, 1)),
        "test": outputs(net, *toy_data(20, 2)),
        "far": outputs(net, *toy_data(20, 3, ood=True)),
    }


SETTINGS = {"knn": {"k": 5}}
# ViM's residual subspace is pure noise on this toy, so it separates less sharply
MIN_AUROC = {"vim": 0.9}


def test_registry_names():
    assert set(det.available_postprocessors()) == {
        "msp", "ebo", "knn", "react", "vim", "mds", "mls", "moon", "known", "ua_msp", "ua_energy"
    }


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match=r"'odin'.*valid choices: msp, ebo"):
        det.build_postprocessor("odin", TinyNet())


@pytest.mark.parametrize("name", det.available_postprocessors())
def test_contract_every_postprocessor(name, setup):
    net, out = setup
    if det.POSTPROCESSORS[name].requires_unknown and not det.has_unknown_head(net):
        with pytest.raises(det.UnknownHeadRequired, match=name):
            det.build_postprocessor(name, net)
        return
    pp = det.build_postprocessor(name, net, **SETTINGS.get(name, {}))
    assert pp.fit(out["train"], out["val"]) is pp
    for split in ("test", "far"):
        conf = pp.confidence(out[split])
        assert isinstance(conf, np.ndarray) and conf.dtype == np.float64
        assert conf.shape == (len(out[split]),) and np.all(np.isfinite(conf))
    # higher = more ID on this obviously separable toy case
    assert auroc(pp.confidence(out["test"]), pp.confidence(out["far"])) > MIN_AUROC.get(name, 0.95), name


def test_to_confidence_is_the_negated_outlier_score():
    np.testing.assert_array_equal(det.to_confidence(torch.tensor([1.0, -2.0, 0.5])), [-1.0, 2.0, -0.5])


def test_logit_scores_match_their_formulas(setup):
    net, out = setup
    z = out["test"].logits.double()
    probs = torch.softmax(z, dim=1).numpy()
    np.testing.assert_allclose(det.build_postprocessor("msp", net).confidence(out["test"]), probs.max(1))
    np.testing.assert_allclose(
        det.build_postprocessor("ebo", net, temperature=2.0).confidence(out["test"]),
        2.0 * np.log(np.exp(z.numpy() / 2.0).sum(1)),
    )
    np.testing.assert_allclose(det.build_postprocessor("mls", net).confidence(out["test"]), z.numpy().max(1))


def test_moon_score(setup):
    net, out = setup
    moon = det.build_postprocessor("moon", net).confidence(out["far"])
    msp = det.build_postprocessor("msp", net).confidence(out["far"])
    if det.has_unknown_head(net):
        np.testing.assert_allclose(moon, moon_confidence(out["far"].logits_k1).numpy())
        assert np.all(moon < msp)  # mass on the unknown logit lowers the paper's score
    else:
        np.testing.assert_array_equal(moon, msp)


def test_knn_is_minus_distance_to_kth_normalised_neighbour(setup):
    net, out = setup
    pp = det.build_postprocessor("knn", net, K=7).fit(out["train"])  # OpenOOD's alias
    unit = lambda t: t / t.norm(dim=1, keepdim=True)  # noqa: E731
    dist = torch.cdist(unit(out["far"].features.double()), unit(out["train"].features.double()))
    expected = -dist.sort(dim=1).values[:, 6]
    np.testing.assert_allclose(pp.confidence(out["far"]), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_react_is_energy_of_forward_threshold(setup):
    net, out = setup
    pp = det.build_postprocessor("react", net, percentile=85).fit(out["train"], out["val"])
    assert pp.threshold == pytest.approx(np.percentile(out["val"].features.numpy(), 85))
    x, _ = toy_data(20, 2)
    with torch.no_grad():
        expected = torch.logsumexp(net.forward_threshold(x, pp.threshold), dim=1)
    np.testing.assert_allclose(pp.confidence(out["test"]), expected.numpy(), rtol=1e-5)
    on_train = det.build_postprocessor("react", net, fit_split="train").fit(out["train"], out["val"])
    assert on_train.threshold == pytest.approx(np.percentile(out["train"].features.numpy(), 90))


def test_mds_ranks_like_openood_mahalanobis(setup):
    """OpenOOD's mds: class means, covariance of the class-centred features (divided by N),
    confidence = max_c -(f - mu_c)^T P (f - mu_c). pytorch-ood's covariance is not divided by N and its
    confidence halved: ours * 2 N == OpenOOD's (up to its 1e-6 ridge)."""
    net, out = setup
    pp = det.build_postprocessor("mds", net).fit(out["train"])
    f, y = out["train"].features.double().numpy(), out["train"].labels.numpy()
    mu = np.stack([f[y == c].mean(0) for c in range(K)])
    centred = f - mu[y]
    precision = np.linalg.inv(centred.T @ centred / len(f))
    g = out["far"].features.double().numpy()
    d = g[:, None, :] - mu[None]
    openood = np.max(-np.einsum("ncf,fg,ncg->nc", d, precision, d), axis=1)
    np.testing.assert_allclose(pp.confidence(out["far"]) * 2 * len(f), openood, rtol=1e-3)


def test_vim_settings(setup):
    net, out = setup
    assert det.build_postprocessor("vim", net).detector.d == F // 2
    assert det.build_postprocessor("vim", net, dim=3).detector.d == 3  # OpenOOD's alias
    for bad in (0, F, 2.5):
        with pytest.raises(ValueError, match="vim: d"):
            det.build_postprocessor("vim", net, d=bad)


def test_bad_settings():
    net = TinyNet()
    with pytest.raises(ValueError, match=r"unknown settings \['kk'\].*'k'"):
        det.build_postprocessor("knn", net, kk=3)
    with pytest.raises(ValueError, match="not both"):
        det.build_postprocessor("knn", net, k=3, K=4)
    with pytest.raises(ValueError, match="percent"):
        det.build_postprocessor("react", net, percentile=0.9)
    with pytest.raises(ValueError, match="accepts none"):
        det.build_postprocessor("msp", net, t=2)
    with pytest.raises(ValueError, match="k=50 exceeds"):
        det.build_postprocessor("knn", net).fit(outputs(net, *toy_data(5, 0)))


def test_unknown_aware_scores_need_k1_logits():
    pp = det.build_postprocessor("known", TinyNet(unknown=True))
    plain = outputs(TinyNet(), *toy_data(2, 0))
    with pytest.raises(det.UnknownHeadRequired):
        pp.confidence(plain)
