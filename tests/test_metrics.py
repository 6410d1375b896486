"""Metric math on synthetic features, cross-checked against torch-fidelity and clean-fid on the
same features, and against closed-form answers where the libraries are wrong."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import stats as sps
from scipy.spatial.distance import pdist

from bench.metrics import (MetricInputError, aggregate, average_pairwise_l2, class_entropy, cmmd, compare,
                           feature_stats, fid_from_features, frechet_distance, inception_score, kid,
                           memorization_ratio, precision_recall, relative_mahalanobis, top_rmd)


def correlated(rng, n, d, shift=0.0, scale=1.0):
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    return np.maximum(rng.standard_normal((n, d)) @ mix * scale + shift, 0)  # ReLU-like, as pool3


@pytest.fixture
def feats():
    rng = np.random.default_rng(0)
    return correlated(rng, 3000, 64), correlated(rng, 2500, 64, shift=0.05, scale=1.1)


def lib_stats(x):
    return x.mean(0), np.cov(x, rowvar=False)


# ---------------------------------------------------------------- FID


def test_covariance_matches_np_cov(feats):
    g, _ = feats
    st = feature_stats(g.astype(np.float32))
    np.testing.assert_allclose(st.sigma, np.cov(g.astype(np.float32).astype(np.float64), rowvar=False), rtol=1e-12)
    assert st.mu.dtype == np.float64 and st.sigma.dtype == np.float64


def test_fid_agrees_with_torch_fidelity_and_clean_fid(feats):
    from cleanfid.fid import frechet_distance as cleanfid_fd
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    g, r = feats
    ours = fid_from_features(g, r)
    (mg, sg), (mr, sr) = lib_stats(g), lib_stats(r)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # clean-fid's sqrtm(disp=False)
        theirs_cf = cleanfid_fd(mg, sg, mr, sr)
    theirs_tf = fid_statistics_to_metric({"mu": mg, "sigma": sg}, {"mu": mr, "sigma": sr}, False)[
        "frechet_inception_distance"]
    assert ours > 0.1
    assert ours == pytest.approx(theirs_cf, rel=1e-6)
    assert ours == pytest.approx(theirs_tf, rel=1e-6)
    # the statistics route gives the same value as the feature route
    assert frechet_distance(feature_stats(g), feature_stats(r)) == pytest.approx(ours, rel=1e-10)


def test_fid_is_dtype_independent_where_torch_fidelity_asserts(feats):
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    g, r = feats
    g32 = g.astype(np.float32)
    assert fid_from_features(g32, r) == pytest.approx(fid_from_features(g32.astype(np.float64), r), rel=1e-12)
    with pytest.raises(AssertionError):  # torch-fidelity: mu dtypes must match
        fid_statistics_to_metric(fid_features_to_statistics(torch.from_numpy(g32)),
                                 fid_features_to_statistics(torch.from_numpy(r)), False)


@pytest.mark.parametrize("d,n", [(256, 40), (512, 100)])
def test_rank_deficient_fid_exact_where_libraries_drift(d, n):
    """N < D: sqrtm (clean-fid) and eigvals (torch-fidelity) lose accuracy on singular covariances.
    Two cases with closed-form answers: a pure shift (FID = |c|^2) and a scaling by a
    (FID = (a-1)^2 (|mu|^2 + Tr S))."""
    from cleanfid.fid import frechet_distance as cleanfid_fd
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    rng = np.random.default_rng(1)
    r = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * 0.1 + 1
    c = rng.standard_normal(d) * 0.01
    a = 1.1
    mu = r.mean(0)
    cases = [(r + c, c @ c), (a * r, (a - 1) ** 2 * (mu @ mu + np.trace(np.cov(r, rowvar=False))))]
    for g, truth in cases:
        with pytest.warns(UserWarning, match="rank-deficient"):
            ours = fid_from_features(g, r)
        with pytest.warns(UserWarning):
            ours_stats = frechet_distance(feature_stats(g), feature_stats(r))
        (mg, sg), (mr, sr) = lib_stats(g), lib_stats(r)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            err_cf = abs(cleanfid_fd(mg, sg, mr, sr) - truth)
        err_tf = abs(fid_statistics_to_metric({"mu": mg, "sigma": sg}, {"mu": mr, "sigma": sr}, False)[
            "frechet_inception_distance"] - truth)
        assert ours == pytest.approx(truth, rel=1e-8)
        assert ours_stats == pytest.approx(truth, rel=1e-8)
        # the libraries are off by orders of magnitude more than we are
        assert min(err_cf, err_tf) > 1000 * abs(ours - truth)
        assert min(err_cf, err_tf) > 1e-6 * truth


def test_fid_warns_below_feature_dim_and_zero_for_identical():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((30, 40))
    with pytest.warns(UserWarning, match="30 samples < 40"):
        assert abs(fid_from_features(x, x)) < 1e-9


@pytest.mark.parametrize("bad,match", [
    (np.full((10, 4), np.nan), "NaN"),
    (np.ones((10, 5)), "dimensions differ"),
    (np.ones(10), r"\(N, D\)"),
    (np.ones((1, 4)), "at least 2"),
    (np.array([["a"] * 4] * 5), "numeric"),
])
def test_fid_bad_input_one_clear_error(bad, match):
    good = np.random.default_rng(0).standard_normal((10, 4))
    with pytest.raises(MetricInputError, match=match):
        fid_from_features(bad, good)


# ---------------------------------------------------------------- KID, IS, PRC vs torch-fidelity


@pytest.mark.parametrize("kernel", ["poly", "rbf"])
def test_kid_agrees_with_torch_fidelity(feats, kernel):
    from torch_fidelity.metric_kid import kid_features_to_metric

    g, r = feats
    ours = kid(g, r, subsets=20, subset_size=300, seed=7, kernel=kernel)
    theirs = kid_features_to_metric(torch.from_numpy(g), torch.from_numpy(r), kid_subsets=20, kid_subset_size=300,
                                    rng_seed=7, kid_kernel=kernel, verbose=False)
    assert ours["mean"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-9)
    assert ours["std"] == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-9)


def test_kid_seeded_and_guards(feats):
    g, r = feats
    assert kid(g, r, 5, 100, seed=1) == kid(g, r, 5, 100, seed=1)
    assert kid(g, r, 5, 100, seed=1)["mean"] != kid(g, r, 5, 100, seed=2)["mean"]
    with pytest.raises(MetricInputError, match="subset_size=5000"):
        kid(g, r, 5, 5000)
    # unbiased: two samples of the same distribution average to ~0
    rng = np.random.default_rng(3)
    same = kid(rng.standard_normal((2000, 16)), rng.standard_normal((2000, 16)), 50, 500)
    assert abs(same["mean"]) < 3 * same["std"] / np.sqrt(50) + 1e-12


def test_inception_score_agrees_with_torch_fidelity():
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = np.random.default_rng(4).standard_normal((1000, 50)) * 3
    for shuffle in (True, False):
        ours = inception_score(logits, splits=10, shuffle=shuffle, seed=2020)
        theirs = isc_features_to_metric(torch.from_numpy(logits), splits=10, shuffle=shuffle, rng_seed=2020)
        assert ours["mean"] == pytest.approx(theirs["inception_score_mean"], rel=1e-10)
        assert ours["std"] == pytest.approx(theirs["inception_score_std"], rel=1e-8)
    # one confident class per sample, classes uniform -> IS = number of classes
    peaked = np.eye(10)[np.arange(1000) % 10] * 100
    assert inception_score(peaked, splits=10, shuffle=False)["mean"] == pytest.approx(10, rel=1e-6)


def test_precision_recall_agrees_with_torch_fidelity(feats):
    from torch_fidelity.metric_prc import prc_features_to_metric

    g, r = feats
    g, r = g[:800], r[:700]
    ours = precision_recall(g, r, k=3)
    theirs = prc_features_to_metric(torch.from_numpy(g), torch.from_numpy(r), prc_neighborhood=3,
                                    prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    assert 0 < ours["precision"] < 1 and 0 < ours["recall"] < 1
    # the same samples counted inside (torch-fidelity averages in float32)
    assert round(ours["precision"] * len(g)) == round(theirs["precision"] * len(g))
    assert round(ours["recall"] * len(r)) == round(theirs["recall"] * len(r))
    # small blocks give the same answer
    assert precision_recall(g, r, k=3, block=97) == ours


def test_precision_recall_extremes():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((200, 8))
    assert precision_recall(x, x)["precision"] == 1.0
    far = precision_recall(x + 100, x)
    assert far["precision"] == 0.0 and far["recall"] == 0.0
    with pytest.raises(MetricInputError, match="k=3"):
        precision_recall(x[:3], x)


# ---------------------------------------------------------------- slight-corruption paper metrics


def test_rmd_matches_direct_formula_and_top_fraction():
    rng = np.random.default_rng(6)
    means = rng.standard_normal((3, 5)) * 4
    yr = np.repeat(np.arange(3), 300)
    r = means[yr] + rng.standard_normal((900, 5))
    g = means[np.arange(100) % 3] + rng.standard_normal((100, 5)) * 1.5
    yg = np.arange(100) % 3
    got = relative_mahalanobis(g, r, yr, yg)
    within = r - means_hat(r, yr)[yr]
    prec_k = np.linalg.inv(within.T @ within / (900 - 3))
    prec_0 = np.linalg.inv(np.cov(r, rowvar=False))
    mk = means_hat(r, yr)[yg]
    want = np.einsum("nd,de,ne->n", g - mk, prec_k, g - mk) - np.einsum(
        "nd,de,ne->n", g - r.mean(0), prec_0, g - r.mean(0))
    np.testing.assert_allclose(got, want, rtol=1e-8)
    assert top_rmd(g, r, yr, yg, top=0.05) == pytest.approx(np.sort(want)[-5:].mean())
    # without generated labels: the nearest class (smallest class-conditional distance)
    assert (relative_mahalanobis(g, r, yr) <= got + 1e-9).all()


def means_hat(r, y):
    return np.stack([r[y == c].mean(0) for c in np.unique(y)])


def test_entropy():
    assert class_entropy(np.arange(100) % 4, num_classes=4) == {"entropy": pytest.approx(np.log(4)),
                                                                 "normalized": pytest.approx(1.0), "num_classes": 4}
    assert class_entropy(np.zeros(10, int), num_classes=4)["entropy"] == 0.0
    logits = np.eye(5)[[0, 0, 1, 1]] * 9
    assert class_entropy(logits=logits)["entropy"] == pytest.approx(np.log(2))
    with pytest.raises(MetricInputError, match=r"\[0, 4\)"):
        class_entropy(np.array([0, 7]), num_classes=4)


def test_memorization_ratio():
    rng = np.random.default_rng(7)
    train = rng.standard_normal((300, 16))
    copies = train[:50] + 1e-4 * rng.standard_normal((50, 16))
    novel = rng.standard_normal((50, 16))
    assert memorization_ratio(copies, train) == 1.0
    assert memorization_ratio(np.vstack([copies, novel]), train) == pytest.approx(0.5, abs=0.04)


def test_average_pairwise_l2_matches_pdist():
    x = np.random.default_rng(8).standard_normal((300, 10))
    assert average_pairwise_l2(x) == pytest.approx(pdist(x).mean(), rel=1e-10)
    sub = average_pairwise_l2(x, max_samples=100, seed=1)
    assert sub == average_pairwise_l2(x, max_samples=100, seed=1) and sub == pytest.approx(pdist(x).mean(), rel=0.1)


def test_cmmd_is_scaled_biased_rbf_mmd_as_torch_fidelity_computes_it():
    from torch_fidelity.metric_kid import kernel_rbf, mmd2

    rng = np.random.default_rng(9)
    g = rng.standard_normal((400, 32))
    r = rng.standard_normal((400, 32)) + 0.3
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    kw = {"kid_kernel_rbf_sigma": 10}
    theirs = mmd2(kernel_rbf(g, g, **kw), kernel_rbf(g, r, **kw), kernel_rbf(r, r, **kw), mmd_est="biased")
    assert cmmd(g, r, block=64) == pytest.approx(1000 * theirs, rel=1e-8)
    assert abs(cmmd(g, g)) < 1e-9


# ---------------------------------------------------------------- confidence intervals


def test_aggregate_is_a_t_interval_over_runs():
    runs = [{"fid": v, "kid": {"mean": v / 100, "std": 1.0, "subsets": 10}, "prc": {"precision": v / 10, "k": 3}}
            for v in (10.0, 12.0, 11.0, 13.0)]
    agg = aggregate(runs)
    lo, hi = sps.t.interval(0.95, 3, loc=11.5, scale=np.std([10, 12, 11, 13], ddof=1) / 2)
    assert agg["fid"]["mean"] == pytest.approx(11.5) and agg["fid"]["n"] == 4
    assert agg["fid"]["ci95"] == [pytest.approx(lo), pytest.approx(hi)]
    assert agg["kid"]["mean"] == pytest.approx(0.115)
    assert set(agg) == {"fid", "kid", "prc.precision"}  # subset counts and k are not metrics


def test_paired_comparison_over_shared_seeds():
    a = {0: {"fid": 10.0}, 1: {"fid": 12.0}, 2: {"fid": 11.0}, 3: {"fid": 99.0}}
    b = {0: {"fid": 9.0}, 1: {"fid": 10.5}, 2: {"fid": 10.5}}
    diff = compare(a, b)["fid"]
    assert diff["n"] == 3 and diff["mean"] == pytest.approx(1.0)
    assert compare({0: {"fid": 1.0}}, {0: {"fid": 2.0}})["fid"] is None


def test_inception_score_finite_with_extreme_logits():
    logits = np.random.default_rng(10).standard_normal((100, 20)) * 1e4   # p(y|x) underflows to 0
    out = inception_score(logits, splits=5)
    assert np.isfinite(out["mean"]) and 1 <= out["mean"] <= 20
