"""Format version 3's subtractive dither, integrated exactly (no Monte Carlo): a stored value
decodes to ℓ̂ = ℓ + h·e, e uniform on [−1/2, 1/2) whatever ℓ, so every expectation here is a
Gauss–Legendre sum over e (tests/formats/v3_exact.py).

- the per-value readings of `kd.losses._undithered` are unbiased: exactly on the nucleus
  (p, p log p, p^(1/T), p^(1/T) log p, log p), to within 7h⁴/5760·|ψ''''| on the tail (the
  weight w, w log p, log p / q), for any threshold (property-based);
- on real SmolLM2 rows, the rounding shift of every kind × estimator at T = 1 and T = 2
  (value and gradient) is within 0.1 % of the dense value / gradient norm, and reading the
  codes without the correction is measurably worse.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from logit_lineage.formats import codes, tail
from logit_lineage.kd.losses import _tail_slopes, _undithered
from v3_exact import NODES, WEIGHTS, compressed_record, real_teacher_rows, rounding_shift

H_N, H_S = codes.NUCLEUS_STEP, codes.TAIL_STEP
GL16 = [a / 2 for a in np.polynomial.legendre.leggauss(16)]  # nodes on [−1/2, 1/2], weights sum to 1


def _expect(read, lp: float, step: float) -> float:
    """E over the dither of read(ℓ̂), ℓ̂ = lp + step·e (16-point Gauss–Legendre: exact to float64)."""
    nodes, weights = GL16
    return float(weights @ read(lp + step * nodes))


@pytest.mark.parametrize("lp", [-0.001, -0.4, -2.5, -9.0, -15.0])
@pytest.mark.parametrize("inv_t,m", [(1.0, 0), (1.0, 1), (0.5, 0), (0.5, 1), (0.0, 1), (2.0, 1)])
def test_nucleus_readings_are_exactly_unbiased(lp, inv_t, m):
    """ψ = p^(1/T)·(log p)^m read as e^(bℓ̂)(ℓ̂ − D(b))^m / S(b): E = ψ to float64 precision."""
    def read(ell):
        t = torch.from_numpy(np.asarray(ell, np.float64))
        return _undithered(torch.exp(inv_t * t), t, torch.tensor(H_N, dtype=torch.float64), None,
                           inv_t - 1.0, m).numpy()

    truth = np.exp(inv_t * lp) * lp**m
    assert abs(_expect(read, lp, H_N) - truth) <= 1e-12 * max(abs(truth), np.exp(inv_t * lp))
    raw = _expect(lambda ell: np.exp(inv_t * ell) * ell**m, lp, H_N)  # read as decoded: biased
    if inv_t > 0:
        assert abs(raw - truth) > 1e-6 * abs(truth)


def _psi(kind: str, ell, kappa_hat):
    """What the losses read from tail codes: the weight w (CE, forward KL), w log p (entropy),
    log p / q = w e^(−ℓ) log p (reverse KL), w p^(−1/2) (T = 2)."""
    w = tail.tail_weights(ell, kappa_hat)
    return {"w": w, "entropy": w * ell, "reverse": ell * w * np.exp(-ell), "t2": w * np.exp(-0.5 * ell)}[kind]


def _read(kind: str, ell: np.ndarray, kappa_hat: float) -> np.ndarray:
    t = torch.from_numpy(np.asarray(ell, np.float64))
    w = torch.from_numpy(tail.tail_weights(ell, kappa_hat))
    slopes = _tail_slopes(t, w, torch.ones_like(t, dtype=torch.bool))
    g, c, m = {"w": (w, 0.0, 0), "entropy": (w, 0.0, 1), "reverse": (w * torch.exp(-t), -1.0, 1),
               "t2": (w * torch.exp(-0.5 * t), -0.5, 0)}[kind]
    return _undithered(g, t, torch.tensor(H_S, dtype=torch.float64), slopes, c, m).numpy()


def _bound(kind: str, lp: float, kappa_hat: float) -> float:
    """7h⁴/5760·max|ψ''''| over the window (fourth differences, float64), + float64 noise."""
    e = 0.03
    worst = 0.0
    for x0 in lp + H_S * np.linspace(-0.5, 0.5, 5):
        psi = _psi(kind, x0 + e * np.arange(-2, 3), kappa_hat)
        worst = max(worst, abs(psi[0] - 4 * psi[1] + 6 * psi[2] - 4 * psi[3] + psi[4]) / e**4)
    return 1.2 * 7 * H_S**4 / 5760 * worst + 1e-11 * abs(_psi(kind, np.array([lp]), kappa_hat)[0])


@settings(max_examples=80, deadline=None)
@given(st.floats(-30.0, -0.1), st.floats(-14.0, 0.0) | st.just(float("-inf")),
       st.sampled_from(["w", "entropy", "reverse", "t2"]))
def test_tail_readings_are_unbiased_to_fourth_order(lp, kappa, kind):
    """E[ψ(ℓ̂) − h²/24·ψ''(ℓ̂)] − ψ(ℓ) is within 7h⁴/5760·|ψ''''| (the next term of the window's
    mean), for the tail weight and every term the losses read, above and far below κ."""
    kappa_hat = float(np.float32(kappa))
    truth = _psi(kind, np.array([lp]), kappa_hat)[0]
    bias = _expect(lambda ell: _read(kind, ell, kappa_hat), lp, H_S) - truth
    raw = _expect(lambda ell: _psi(kind, ell, kappa_hat), lp, H_S) - truth
    assert abs(bias) <= _bound(kind, lp, kappa_hat), (bias, raw, _bound(kind, lp, kappa_hat))
    if kind == "w":  # relative to the weight: far below 1e-5
        assert abs(bias) <= 1e-5 * truth


# --- real SmolLM2 rows ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_rows():
    """Every fourth assistant-token row of the four short chats of tests/distill/test_real_teacher.py, from
    SmolLM2-135M-Instruct (float32 [10, 49152]): peaked and flat rows, kept few so that the
    slot-by-slot integrals of the non-separable cases stay cheap."""
    z = real_teacher_rows()[::4].contiguous()
    rec = compressed_record(z, seed=5)
    student = z + torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
    return z, rec, student


SEPARABLE = [("forward_kl", "unbiased"), ("forward_kl", "unbiased_exact_mass"), ("ce", "unbiased"),
             ("reverse_kl", "unbiased")]


@pytest.mark.parametrize("kind,estimator", SEPARABLE)
def test_rounding_shift_at_t1_is_exactly_within_a_tenth_of_a_percent(real_rows, kind, estimator):
    z, rec, student = real_rows
    after = rounding_shift(z, student, rec, kind=kind, estimator=estimator)
    assert abs(after["value"]) <= 1e-3 and after["grad"] <= 1e-3, after
    # the readings are unbiased per value (nucleus exactly, tail to O(h⁴)): what is left is float32 noise
    assert abs(after["value"]) <= 2e-5 and after["grad"] <= 2e-5, after
    before = rounding_shift(z, student, rec, grid=False, kind=kind, estimator=estimator)
    assert abs(before["value"]) >= 3 * abs(after["value"]) or before["grad"] >= 3 * after["grad"], (before, after)


@pytest.mark.parametrize("kind,estimator,temperature", [
    ("forward_kl", "unbiased", 2.0), ("reverse_kl", "unbiased", 2.0), ("forward_kl", "topk", 2.0),
    ("reverse_kl", "topk", 2.0), ("forward_kl", "topk", 1.0), ("reverse_kl", "topk", 1.0)])
def test_rounding_shift_of_ratio_estimators_is_within_a_tenth_of_a_percent(real_rows, kind, estimator,
                                                                           temperature):
    """T = 2 and topk (ratios over a token's values, log Ẑ), integrated slot by slot."""
    z, rec, student = real_rows
    after = rounding_shift(z, student, rec, kind=kind, estimator=estimator, temperature=temperature)
    assert abs(after["value"]) <= 1e-3 and after["grad"] <= 1e-3, after


def test_quadrature_nodes_integrate_the_window():
    """The nodes v3_exact integrates with: weights sum to 1, exact for e^(be) to 1e-14 (|b| ≤ 2)."""
    assert abs(WEIGHTS.sum() - 1) < 1e-14 and np.all(np.abs(NODES) < 0.5)
    for b in (-2.0, 0.3, 2.0):
        x = b / 2
        assert abs(WEIGHTS @ np.exp(b * NODES) - np.sinh(x) / x) < 1e-14


def test_grid_steps_follow_each_examples_format(tmp_path):
    """A batch mixing a version-2 and a version-3 example: the grid steps are 0 for the first
    and the code steps for the second, and each row's loss is what it is in a batch of its own."""
    from logit_lineage.formats.logits import build_table, write_logits_parquet
    from logit_lineage.kd import CompressedLogitsDataset, collate_targets, kd_loss, shard_params

    gen = torch.Generator().manual_seed(4)
    z = torch.randn(30, 800, generator=gen) * 3
    rec = compressed_record(z, seed=2)
    items = {}
    for v in (2, 3):
        path = tmp_path / f"v{v}.parquet"
        write_logits_parquet(path, build_table([rec], 800, version=v, seed=2), shard_params(800, 2))
        items[v] = next(iter(CompressedLogitsDataset(str(path))))
    assert collate_targets([items[2]]).nucleus_step is None
    mixed = collate_targets([items[2], items[3]], vocab_size=800)
    assert torch.all(mixed.nucleus_step[0] == 0) and torch.all(mixed.tail_step[0] == 0)
    assert torch.all(mixed.nucleus_step[1][mixed.mask[1]] == H_N) and torch.all(mixed.tail_step[1][mixed.mask[1]] == H_S)
    student = z + torch.randn(z.shape, generator=gen)
    for kind in ("forward_kl", "reverse_kl"):
        for t in (1.0, 2.0):
            both = kd_loss(torch.cat([student, student]), mixed, kind=kind, reduction="none", temperature=t)
            alone = [kd_loss(student, collate_targets([items[v]]), kind=kind, reduction="none", temperature=t)
                     for v in (2, 3)]
            torch.testing.assert_close(both, torch.cat(alone), rtol=1e-6, atol=1e-6)
            assert not torch.allclose(alone[0], alone[1], rtol=1e-4, atol=0)  # the versions' values differ
