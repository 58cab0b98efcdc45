"""The measurement modules behind chapters 8 and 9."""

import numpy as np
import pytest

from lnlib import geometry, layer_norm_backward, layer_norm_forward, leaderboard


def test_energy_fractions_sum_to_one_and_are_right(rng):
    x = rng.standard_normal((5, 32))
    _, cache = layer_norm_forward(x)
    g = rng.standard_normal((5, 32))
    e = geometry.energy_fractions(g, cache.x_hat)
    np.testing.assert_allclose(e.mean + e.radial + e.rest, 1.0, rtol=1e-12)
    pure_mean = geometry.energy_fractions(np.ones((5, 32)), cache.x_hat)
    np.testing.assert_allclose(pure_mean.mean, 1.0)
    pure_radial = geometry.energy_fractions(3 * cache.x_hat, cache.x_hat)
    np.testing.assert_allclose(pure_radial.radial, 1.0)


def test_true_surrogate_is_lnlib_backward(rng):
    x, dy, gamma = rng.standard_normal((4, 16)), rng.standard_normal((4, 16)), rng.standard_normal(16)
    _, cache = layer_norm_forward(x, gamma)
    dx = geometry.surrogate_dx("true", dy * gamma, cache.x_hat, cache.rstd)
    np.testing.assert_allclose(dx, layer_norm_backward(dy, cache)[0], rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="kind"):
        geometry.surrogate_dx("other", dy, cache.x_hat, cache.rstd)


def test_training_learns_and_records():
    h = geometry.train_mlp(steps=150, width=32, depth=2, batch=64, seed=1)
    assert h["loss"][-20:].mean() < 0.5 * h["loss"][:5].mean()
    for k in ("mean", "radial", "rest"):
        assert h["energy"][k].shape == (150, 2)
    assert np.all(h["cos"]["center_scale"] <= 1 + 1e-12) and np.all(h["cos"]["identity"] > 0)
    with pytest.raises(ValueError, match="backward"):
        geometry.train_mlp(steps=1, backward="nope")


def test_leaderboard_lnlib_wins_or_ties_everywhere():
    results = leaderboard.run()
    by_case = {}
    for r in results:
        by_case.setdefault(r.case, {})[r.impl] = r
    for case, rows in by_case.items():
        ours = rows["lnlib"]
        tol_y, tol_dx = (2 ** -11, 2 ** -10) if "float16" in case else (2e-6, 1e-5)
        assert ours.y <= tol_y and ours.dx <= tol_dx, (case, ours)
        for name, r in rows.items():
            if name != "lnlib" and np.isfinite(r.y):
                assert ours.y <= r.y * 1.01 + 1e-7, (case, name)
                assert ours.dx <= r.dx * 1.01 + 1e-7, (case, name)


def test_leaderboard_error_metric():
    assert leaderboard.error(np.array([1.0, np.nan]), np.array([1.0, 2.0])) == float("inf")
    assert leaderboard.error(np.zeros(3), np.zeros(3)) == 0.0
    assert leaderboard.error(np.array([1e-3]), np.zeros(1)) == pytest.approx(1e-3)
