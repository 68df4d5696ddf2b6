"""Exact guidance math on a 2-D Gaussian mixture with analytic scores (no trained network involved)."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from demo.engine.batching import Belief, Evaluation, evaluate_together
from demo.engine.config import NULL_LABEL, Interval
from demo.engine.guidance import (
    GFCG_OPTIONS,
    GUIDANCE,
    METHODS,
    SIGMA_READ_X0,
    make_guidance,
)
from demo.toy.mixture import MixtureClassifier

SIGMAS = [0.05, 0.3, 1.0, 4.0]
WEIGHTS = [0.5, 1.0, 3.0, 7.5]


def points(n: int = 64, scale: float = 3.0) -> torch.Tensor:
    return scale * torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def labels(n: int, c: int = 1) -> torch.Tensor:
    return torch.full((n,), c, dtype=torch.long)


def score(mixture, x, sigma, label):
    """grad_x log p_sigma(x | label) by autograd of the analytic log-density."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(mixture.log_prob(x, sigma, label).sum(), x)
    return grad


@pytest.mark.parametrize("sigma", SIGMAS)
def test_analytic_denoiser_is_tweedie(mixture, sigma):
    x = points()
    for label in (labels(len(x), 0), labels(len(x), 2), labels(len(x), NULL_LABEL)):
        expected = x + sigma**2 * score(mixture, x, sigma, label)          # Tweedie: D = x + sigma^2 grad log p
        torch.testing.assert_close(mixture(x, sigma, label), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("sigma", SIGMAS)
def test_analytic_classifier_is_bayes_rule(mixture, mixture_classifier, sigma):
    x = points()
    logits = mixture_classifier(x, sigma)
    for c in range(mixture.num_classes):
        prior = mixture.weights[mixture.classes == c].sum().log()
        expected = mixture.log_prob(x, sigma, c) + prior - mixture.log_prob(x, sigma, NULL_LABEL)
        torch.testing.assert_close(logits[:, c], expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("weight", WEIGHTS)
@pytest.mark.parametrize("sigma", SIGMAS)
def test_cfg_is_score_of_tilted_density(mixture, sigma, weight):
    """CFG at w samples the score of p(x|c)^(1+w) / p(x)^w (Ho & Salimans 2022, Eq. 6)."""
    x, c = points(), labels(64)
    guided = make_guidance("cfg", weight)(mixture, x, sigma, c).denoised
    tilted = (1 + weight) * score(mixture, x, sigma, c) - weight * score(mixture, x, sigma, labels(64, NULL_LABEL))
    torch.testing.assert_close(guided, x + sigma**2 * tilted, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("weight", WEIGHTS)
@pytest.mark.parametrize("sigma", SIGMAS)
def test_classifier_guidance_with_exact_classifier_equals_cfg(mixture, mixture_classifier, sigma, weight):
    x, c = points(), labels(64, 2)
    cg = make_guidance("classifier", weight, classifier=mixture_classifier)(mixture, x, sigma, c)
    cfg = make_guidance("cfg", weight)(mixture, x, sigma, c)
    torch.testing.assert_close(cg.denoised, cfg.denoised, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(cg.p_target, mixture_classifier(x, sigma).exp()[:, 2])


@pytest.mark.parametrize("sigma", SIGMAS)
def test_autoguidance_is_extrapolation_from_weak_model(mixture, sigma):
    """Karras et al. 2024: D_weak + (1 + w)(D - D_weak)."""
    weak, x, c, w = mixture.widened(0.7), points(), labels(64, 0), 2.0
    guided = make_guidance("autoguidance", w, weak_net=weak)(mixture, x, sigma, c).denoised
    expected = weak(x, sigma, c) + (1 + w) * (mixture(x, sigma, c) - weak(x, sigma, c))
    torch.testing.assert_close(guided, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("sigma", SIGMAS)
def test_gfcg_rule(mixture, mixture_classifier, sigma):
    """c_ref = most probable other class, adaptive scale a = 1 - p(c|x); Delta = a (D(x|c) - D(x|c_ref))."""
    x, c, w = points(), labels(64, 1), 2.0
    guided = make_guidance("gfcg", w, classifier=mixture_classifier)(mixture, x, sigma, c)
    p = mixture_classifier(x, sigma).exp()
    p_other = p.clone()
    p_other[:, 1] = -1
    c_ref = p_other.argmax(1)
    assert set(c_ref.tolist()) <= {0, 2} and len(set(c_ref.tolist())) == 2   # both references occur
    a = (1 - p[:, 1])[:, None]
    expected = mixture(x, sigma, c) + w * a * (mixture(x, sigma, c) - mixture(x, sigma, c_ref))
    torch.testing.assert_close(guided.denoised, expected, rtol=1e-9, atol=1e-9)


def near_components(mixture, c: int, sigma: float = 0.05):
    """Points at each component mean and a quarter of the way to every other one, kept where the nearest
    component of a class != c is clearly nearer (by > 0.5) than any component of a third class."""
    m = mixture.means
    x = torch.cat([m + t * (m[j] - m) for j in range(len(m)) for t in (0.0, 0.25)]).unique(dim=0)
    d = (x[:, None] - m[None]).norm(dim=-1)
    own = mixture.classes[d.argmin(1)] == c                                   # inside class c's own component
    d[:, mixture.classes == c] = math.inf
    nearest = mixture.classes[d.argmin(1)]                                    # class of nearest competitor
    third = d.masked_fill(mixture.classes[None] == nearest[:, None], math.inf).min(1).values
    keep = third - d.min(1).values > 0.5
    return x[keep], nearest[keep], own[keep]


@pytest.mark.parametrize("c", [0, 1, 2])
def test_gfcg_reference_is_the_nearest_competing_component(mixture, mixture_classifier, c):
    """reference="confused" with the exact classifier at small sigma: c_ref = class of the nearest component
    whose class is not c (also from inside c's own component)."""
    x, nearest, own = near_components(mixture, c)
    assert len(x) >= 20 and own.any()
    label = labels(len(x), c)
    gfcg = make_guidance("gfcg", 1.0, classifier=mixture_classifier)
    calls = gfcg.requests(mixture, x, 0.05, label, Belief(mixture_classifier(x, 0.05).softmax(1)))
    assert calls[1].label.tolist() == nearest.tolist()


@pytest.mark.parametrize("scale", GFCG_OPTIONS["scale"])
def test_gfcg_scale_vanishes_once_the_class_is_certain(mixture, mixture_classifier, scale):
    gfcg = make_guidance("gfcg", 3.0, classifier=mixture_classifier, options={"scale": scale})
    probs = mixture_classifier(points(256), 1.0).softmax(1)
    for c in range(3):
        a = gfcg.adaptive_scale(probs, labels(256, c))
        assert a.min() >= 0 and a.max() <= 1 and a.max() > 0.5              # in [0, 1], not trivially 0
    deep = mixture.means[2] + 0.1 * points(16, 1.0)                       # inside class 2's outer component
    p_c = mixture_classifier(deep, 0.05).exp()[:, 2]
    assert p_c.min() > 0.999
    assert gfcg.adaptive_scale(mixture_classifier(deep, 0.05).softmax(1), labels(16, 2)).max() < 1e-3
    assert gfcg(mixture, deep, 0.05, labels(16, 2)).delta.abs().max() < 1e-3


@pytest.mark.parametrize("sigma", [0.3, 2.0])
def test_gfcg_null_reference_and_margin_scale(mixture, mixture_classifier, sigma):
    x, c, w = points(), labels(64, 1), 2.0
    p = mixture_classifier(x, sigma).softmax(1)
    cond, null = mixture(x, sigma, c), mixture(x, sigma, labels(64, NULL_LABEL))
    a = (1 - p[:, 1])[:, None]
    gfcg = make_guidance("gfcg", w, classifier=mixture_classifier, options={"reference": "null"})
    guided = gfcg(mixture, x, sigma, c)
    assert torch.equal(guided.delta, w * (a * (cond - null)))
    p_ref = p[:, [0, 2]].max(1)
    c_ref = torch.tensor([0, 2])[p[:, [0, 2]].argmax(1)]
    margin = torch.minimum(torch.ones(64, dtype=x.dtype), p_ref.values / p[:, 1])[:, None]
    assert margin.min() < 0.5 and (margin == 1).any()                        # both regimes occur
    guided = make_guidance("gfcg", w, classifier=mixture_classifier, options={"scale": "margin"})(mixture, x, sigma, c)
    assert torch.equal(guided.delta, w * (margin * (cond - mixture(x, sigma, c_ref))))


class SigmaLog(MixtureClassifier):
    """The exact classifier, recording the noise levels it is asked about."""

    def __init__(self, mixture):
        super().__init__(mixture)
        self.sigmas = []

    def __call__(self, x, sigma):
        self.sigmas.append(sigma)
        return super().__call__(x, sigma)


@pytest.mark.parametrize("method", ["gfcg", "gfcg_ag"])
def test_gfcg_reading_x0_classifies_the_x0_estimate_at_the_lowest_noise(mixture, method):
    x, c, w, sigma = points(), labels(64, 1), 2.0, 1.5
    clf, net, weak = SigmaLog(mixture), CountingNet(mixture), CountingNet(mixture.widened(0.7))
    guided = make_guidance(method, w, classifier=clf, weak_net=weak, options={"reads": "x0"})(net, x, sigma, c)
    cond = mixture(x, sigma, c)
    p = clf.mixture.logits(cond, SIGMA_READ_X0).softmax(1)                    # by hand: p(. | D(x|c), sigma_min)
    c_ref = torch.tensor([0, 2])[p[:, [0, 2]].argmax(1)]
    a = (1 - p[:, 1])[:, None]
    ref = (weak.net if method == "gfcg_ag" else mixture)(x, sigma, c_ref)
    torch.testing.assert_close(guided.delta, w * a * (cond - ref), rtol=1e-12, atol=1e-12)
    assert a.max() > 0.1 and len(set(c_ref.tolist())) == 2                   # not trivially zero
    assert SIGMA_READ_X0 in clf.sigmas and sigma in clf.sigmas                # x0 read, and x_t for the probe
    assert net.samples + weak.samples == 2 * len(x) == GUIDANCE[method].nfe_per_step * len(x)


@pytest.mark.parametrize("sigma", [0.3, 1.0, 4.0])
def test_gfcg_with_autoguidance_takes_the_reference_from_the_weak_net(mixture, mixture_classifier, sigma):
    """GFCG + AG (our guess at the paper's combination): Delta = a (D(x|c) - D_weak(x|c_ref)), two evaluations."""
    x, c, w = points(), labels(64, 1), 2.0
    net, weak = CountingNet(mixture), CountingNet(mixture.widened(0.7))
    guided = make_guidance("gfcg_ag", w, classifier=mixture_classifier, weak_net=weak)(net, x, sigma, c)
    p = mixture_classifier(x, sigma).softmax(1)
    c_ref = torch.tensor([0, 2])[p[:, [0, 2]].argmax(1)]
    a = (1 - p[:, 1])[:, None]
    expected = mixture(x, sigma, c) + w * a * (mixture(x, sigma, c) - weak.net(x, sigma, c_ref))
    torch.testing.assert_close(guided.denoised, expected, rtol=1e-9, atol=1e-9)
    assert net.samples == weak.samples == len(x)                              # 2 denoiser evaluations per sample
    assert METHODS[:5] == ("unguided", "classifier", "cfg", "gfcg", "autoguidance") and METHODS[-1] == "gfcg_ag"
    assert GUIDANCE["gfcg_ag"].colour not in {GUIDANCE[m].colour for m in METHODS[:-1]}


@pytest.mark.parametrize("method", ["gfcg", "gfcg_ag"])
def test_every_gfcg_variant_costs_two_evaluations_and_nothing_at_zero_weight(mixture, mixture_classifier, method):
    x, c = points(16), labels(16, 0)
    for values in itertools.product(*GFCG_OPTIONS.values()):
        options = dict(zip(GFCG_OPTIONS, values))
        for weight, cost in [(2.0, 2), (0.0, 1)]:
            net, weak = CountingNet(mixture), CountingNet(mixture.widened(0.7))
            g = make_guidance(method, weight, classifier=mixture_classifier, weak_net=weak, options=options)
            pred = g(net, x, 0.7, c)
            assert net.samples + weak.samples == cost * len(x), options
            assert (torch.count_nonzero(pred.delta) > 0) == (weight > 0), options


def test_guidance_options_are_checked(mixture_classifier):
    assert make_guidance("gfcg", 1.0, classifier=mixture_classifier).reads == "x_t"
    with pytest.raises(ValueError, match="'x_t', 'x0'"):
        make_guidance("gfcg", 1.0, classifier=mixture_classifier, options={"reads": "x1"})
    with pytest.raises(ValueError, match="'confused', 'null'"):
        make_guidance("gfcg_ag", 1.0, classifier=mixture_classifier, weak_net=1, options={"reference": "nul"})
    with pytest.raises(ValueError, match="'1-p', 'margin'"):
        make_guidance("gfcg", 1.0, classifier=mixture_classifier, options={"scale": "p"})
    with pytest.raises(ValueError, match="no option 'read'"):
        make_guidance("gfcg", 1.0, classifier=mixture_classifier, options={"read": "x0"})
    with pytest.raises(ValueError, match="no option 'reads'.*none"):
        make_guidance("cfg", 1.0, options={"reads": "x0"})


class CountingNet:
    """Wraps a denoiser and counts evaluated samples (to check that neutral guidance costs nothing)."""

    def __init__(self, net):
        self.net, self.samples = net, 0

    def __call__(self, x, sigma, label):
        self.samples += len(x)
        return self.net(x, sigma, label)


@pytest.mark.parametrize("method", list(GUIDANCE))
def test_zero_weight_and_empty_interval_are_unguided(mixture, mixture_classifier, method):
    x, c, sigma = points(), labels(64), 0.7
    extras = {"classifier": mixture_classifier, "weak_net": mixture.widened(0.5)}
    reference = mixture(x, sigma, c)
    for weight, interval in [(0.0, Interval()), (5.0, Interval(1.0, 2.0)), (5.0, Interval(0.0, 0.5))]:
        net = CountingNet(mixture)
        pred = make_guidance(method, weight, interval, **extras)(net, x, sigma, c)
        assert torch.equal(pred.denoised, reference)
        assert torch.count_nonzero(pred.delta) == 0
        assert net.samples == len(x)                    # no extra evaluation when guidance is off


def test_interval_bounds_are_half_open(mixture):
    x, c = points(), labels(64)
    guidance = make_guidance("cfg", 2.0, Interval(0.5, 1.0))
    assert torch.count_nonzero(guidance(mixture, x, 1.0, c).delta) > 0          # sigma_hi included
    assert torch.count_nonzero(guidance(mixture, x, 0.5, c).delta) == 0         # sigma_lo excluded


def test_cfg_with_label_blind_model_is_unguided(mixture):
    x, c = points(), labels(64)

    def blind(x, sigma, label):
        return mixture(x, sigma, torch.full_like(label, NULL_LABEL))

    pred = make_guidance("cfg", 4.0)(blind, x, 1.0, c)
    torch.testing.assert_close(pred.denoised, blind(x, 1.0, c), rtol=0, atol=1e-12)   # batching may round


def test_cfg_batches_cond_and_null_in_one_pass(mixture):
    calls = []

    def net(x, sigma, label):
        calls.append(label.clone())
        return mixture(x, sigma, label)

    make_guidance("cfg", 1.0)(net, points(8), 1.0, labels(8))
    assert len(calls) == 1 and calls[0].tolist() == [1] * 8 + [NULL_LABEL] * 8


def test_unguided_ignores_weight_and_missing_models_are_errors(mixture):
    assert make_guidance("unguided", 7.0).weight == 0
    with pytest.raises(ValueError, match="classifier"):
        make_guidance("classifier", 1.0)
    with pytest.raises(ValueError, match="weak_net"):
        make_guidance("autoguidance", 1.0)


def test_guidance_weight_convention_matches_other_code_bases(mixture):
    """EDM2's `guidance` g = 1 + w: D = D_u.lerp(D_c, g); guided-diffusion's eps - s sigma grad log p, s = w."""
    x, c, sigma, w = points(), labels(64), 0.8, 1.5
    ours = make_guidance("cfg", w)(mixture, x, sigma, c).denoised
    edm2 = mixture(x, sigma, labels(64, NULL_LABEL)).lerp(mixture(x, sigma, c), 1 + w)
    torch.testing.assert_close(ours, edm2)
    eps = (x - mixture(x, sigma, c)) / sigma
    grad = score(mixture, x, sigma, c) - score(mixture, x, sigma, labels(64, NULL_LABEL))   # grad log p(c|x)
    adm = x - sigma * (eps - w * sigma * grad)
    torch.testing.assert_close(ours, adm)
    assert math.isclose(float((ours - mixture(x, sigma, c)).norm()), float((adm - mixture(x, sigma, c)).norm()))


class LoggingNet:
    """A denoiser or classifier that records the batch size of every call."""

    def __init__(self, net):
        self.net, self.batches = net, []

    def __call__(self, x, sigma, *label):
        self.batches.append(len(x))
        return self.net(x, sigma, *label)


@pytest.mark.parametrize("sigma", [0.3, 4.0])
def test_methods_evaluated_together_equal_each_alone_with_one_call_per_network(mixture, mixture_classifier, sigma):
    """Lockstep batching (a comparison's methods in one denoiser call per round) changes nothing but cost."""
    net, weak, clf = LoggingNet(mixture), LoggingNet(mixture.widened(0.6)), LoggingNet(mixture_classifier)
    extras = {"classifier": clf, "weak_net": weak}
    guidances = [make_guidance(m, 2.5, **extras) for m in METHODS]
    xs = [points(8 + k) * (1 + 0.1 * k) for k in range(len(guidances))]       # different x, sizes, labels
    cs = [labels(len(x), k % 3) for k, x in enumerate(xs)]
    alone = [g(mixture, x, sigma, c, probe=mixture_classifier) for g, x, c in zip(guidances, xs, cs)]
    net.batches.clear(), weak.batches.clear(), clf.batches.clear()
    together = evaluate_together([Evaluation(g, net, x, sigma, c, probe=clf) for g, x, c in zip(guidances, xs, cs)])
    for a, b in zip(alone, together):
        torch.testing.assert_close(b.denoised, a.denoised, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(b.p_target, a.p_target, rtol=1e-12, atol=1e-12)
    rows = {m: len(x) for m, x in zip(METHODS, xs)}
    weak_rows = rows["autoguidance"] + rows["gfcg_ag"]                        # the weak network's own rows
    denoiser_rows = sum(GUIDANCE[m].nfe_per_step * n for m, n in rows.items()) - weak_rows
    assert net.batches == [denoiser_rows]                                     # ONE call for all the methods
    assert weak.batches == [weak_rows]
    assert sorted(clf.batches) == sorted([rows["classifier"], sum(rows.values()) - rows["classifier"]])


@pytest.mark.parametrize("inside", [False, True])
def test_identical_calls_of_methods_on_the_same_noise_are_made_once(mixture, mixture_classifier, inside):
    """A comparison's methods start from the same noise and stay identical until guidance acts on them: outside
    the guidance interval all six ask the denoiser the same question (one call of 8 rows, not 48); inside it they
    share D(x|c) and the no-gradient classifier read. Each such call is made once; nothing else changes."""
    net, weak, clf = LoggingNet(mixture), LoggingNet(mixture.widened(0.6)), LoggingNet(mixture_classifier)
    x, c, sigma = points(8), labels(8, 1), 4.0
    guidances = [make_guidance(m, 2.0, Interval() if inside else Interval(0.0, 1.0), classifier=clf, weak_net=weak)
                 for m in METHODS]
    alone = [g(mixture, x, sigma, c) for g in guidances]
    net.batches.clear(), weak.batches.clear(), clf.batches.clear()
    together = evaluate_together([Evaluation(g, net, x.clone(), sigma, c.clone()) for g in guidances])
    for a, b in zip(alone, together):
        torch.testing.assert_close(b.denoised, a.denoised, rtol=0, atol=0)
    if not inside:
        assert net.batches == [8] and weak.batches == [] and clf.batches == []
    else:   # D(x|c) once, CFG's null and GFCG's reference; the guide for c and c_ref; the classifier with and without grad
        assert net.batches == [3 * 8] and weak.batches == [2 * 8] and clf.batches == [8, 8]


def test_probe_records_p_target_for_every_method(mixture, mixture_classifier):
    x, c = points(), labels(64, 2)
    extras = {"classifier": mixture_classifier, "weak_net": mixture.widened(0.6)}
    expected = mixture_classifier(x, 1.0).softmax(1)[:, 2]
    for method in GUIDANCE:
        pred = make_guidance(method, 1.5, **extras)(mixture, x, 1.0, c, probe=mixture_classifier)
        torch.testing.assert_close(pred.p_target, expected)


def test_classifier_guidance_gradient_works_in_inference_mode(mixture, mixture_classifier):
    """The sampler runs in torch.inference_mode; classifier guidance still gets its exact gradient."""
    x, c = points(), labels(64, 2)
    guidance = make_guidance("classifier", 2.0, classifier=mixture_classifier)
    outside = guidance(mixture, x, 0.8, c)
    with torch.inference_mode():
        inside = evaluate_together([Evaluation(guidance, mixture, x.clone(), 0.8, c.clone())])[0]
    torch.testing.assert_close(inside.denoised, outside.denoised, rtol=0, atol=0)


def test_evaluations_at_different_noise_levels_share_one_call_and_equal_each_alone(mixture, mixture_classifier):
    """Runs at different steps of their trajectories can be batched: the networks get one sigma per row."""
    clf = LoggingNet(mixture_classifier)
    cfg, cg = make_guidance("cfg", 2.0), make_guidance("classifier", 2.0, classifier=clf)
    rows = [(cfg, points(8), 0.3), (cfg, points(5) * 2, 4.0), (cg, points(6), 1.0)]

    def per_row(x, sigma, label):           # the analytic mixture takes one sigma per call; this, one per row
        if isinstance(sigma, torch.Tensor) and sigma.ndim == 1:
            return torch.cat([mixture(x[i:i + 1], float(sigma[i]), label[i:i + 1]) for i in range(len(x))])
        return mixture(x, sigma, label)
    net = LoggingNet(per_row)
    alone = [g(mixture, x, s, labels(len(x))) for g, x, s in rows]
    clf.batches.clear()
    together = evaluate_together([Evaluation(g, net, x, s, labels(len(x))) for g, x, s in rows])
    for a, b in zip(alone, together):
        torch.testing.assert_close(b.denoised, a.denoised, rtol=1e-12, atol=1e-12)
    assert net.batches == [2 * 8 + 2 * 5 + 6] and clf.batches == [6]          # one call per network


@pytest.mark.parametrize("sigma", [0.3, 2.0])
def test_a_new_method_is_one_small_class(mixture, mixture_classifier, away_from_zero, sigma):
    """Adding a method touches one class (conftest.away_from_zero: 'push away from class 0', registered by
    subclassing); it is evaluated in the same batched round as the shipped methods."""
    assert GUIDANCE["away_from_zero"] is away_from_zero
    extras = {"classifier": mixture_classifier, "weak_net": mixture.widened(0.6)}
    methods = [*METHODS, "away_from_zero"]
    x, c = points(), labels(64, 1)
    together = evaluate_together([Evaluation(make_guidance(m, 1.5, **extras), mixture, x, sigma, c)
                                  for m in methods])
    expected = mixture(x, sigma, c) + 1.5 * (mixture(x, sigma, c) - mixture(x, sigma, labels(64, 0)))
    torch.testing.assert_close(together[-1].denoised, expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(together[2].denoised, make_guidance("cfg", 1.5)(mixture, x, sigma, c).denoised)
