"""Format version 3's rounding, exactly (no Monte Carlo): every expectation here is the sum
over the two candidate codes of each stored value, weighted by their probabilities.

- the tail rule keeps E[ŵ] = w(log p, κ̂) to float64 precision and, far below the threshold,
  lets p (not the float32 rounding of κ) decide the code;
- `kd.losses._unrounded` leaves a per-value bias within its documented bound
  step²/12·|ψ'' − ρψ'| (property-based over log p and κ̂), of mean ≈ 0 over the value's
  position between grid points;
- on real SmolLM2 rows, the exact rounding shift of forward KL, CE and reverse KL (value
  and gradient) is within 0.1 % of the dense value / gradient norm for a student near the
  teacher, and reading the codes without the correction is measurably worse.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from logit_lineage.formats import codes
from logit_lineage.kd.losses import _tail_slopes, _unrounded
from v3_exact import compressed_record, real_teacher_rows, rounding_shift

H_N, H_S = codes.NUCLEUS_STEP, codes.TAIL_STEP


def _tail_exact(lp: float, kappa_hat: float):
    """(E[ŵ], E[p̂], w, codes' log-probs, P(upper)) of one tail value, exactly."""
    lo, hi, up = codes.tail_candidates(np.array([lp]), np.array([1]), np.array([kappa_hat]))
    ell = codes.decode(np.array([lo[0], hi[0]]), H_S)
    w = codes.tail_weights(ell, kappa_hat)
    pr = np.array([1 - up[0], up[0]])
    return pr @ w, pr @ np.exp(ell), codes.tail_weights(np.array([lp]), kappa_hat)[0], ell, pr


@pytest.mark.parametrize("lp,kappa", [(-0.2, -1.0), (-6.1, -3.0), (-25.03, -12.3), (-31.0, -9.7), (-14.03, -4.5),
                                      (-4.0, float("-inf"))])
def test_tail_rule_is_exact_and_follows_p_far_below_the_threshold(lp, kappa):
    kappa_hat = float(np.float32(kappa))  # what readers see
    ew, ep, w, _, _ = _tail_exact(lp, kappa_hat)
    assert abs(ew - w) <= 1e-12 * w
    r = np.exp(lp - kappa_hat)
    if r < 1e-3:  # w nearly flat: the rule is E[p̂] = p to first order in r (not pinned to a code by κ̂ − κ)
        assert abs(ep / np.exp(lp) - 1) <= 2 * r
    # the weight's only bias left is the threshold's float32 rounding (≤ 2^-24·|κ| relative)
    if np.isfinite(kappa):
        w_true = codes.tail_weights(np.array([lp]), kappa)[0]
        assert abs(ew / w_true - 1) <= 2.0**-24 * abs(kappa) * 1.01


def _psi(kind: str, ell, kappa_hat):
    """The functions the losses read from codes: p log p / w log p (forward KL's entropy),
    log p and log p / q (reverse KL)."""
    w = codes.tail_weights(ell, kappa_hat)
    if kind == "entropy":
        return w * ell
    return ell * w * np.exp(-ell)  # log p / q


def _read(kind: str, ell: np.ndarray, kappa_hat: float, corrected: bool) -> np.ndarray:
    t = torch.from_numpy(ell)
    w = torch.from_numpy(codes.tail_weights(ell, kappa_hat))
    slopes = _tail_slopes(t, w, torch.ones_like(t, dtype=torch.bool))
    g, c = (w, 0.0) if kind == "entropy" else (w * torch.exp(-t), -1.0)
    step = torch.tensor(H_S if corrected else 0.0, dtype=torch.float64)
    return _unrounded(g, t, step, slopes, c, 1).numpy()


def _bound(kind: str, lp: float, kappa_hat: float) -> float:
    """step²/12·|ψ'' − ρψ'| (ρ = w''/w'), by finite differences in float64."""
    e = 1e-3
    x = np.array([lp - e, lp, lp + e])
    psi = _psi(kind, x, kappa_hat)
    d1, d2 = (psi[2] - psi[0]) / (2 * e), (psi[2] - 2 * psi[1] + psi[0]) / e**2
    # ρ = w''/w' from G = w/e^κ̂ − 1, which keeps its precision where w is flat
    g = codes.weight_excess(np.exp(x - kappa_hat)) if np.isfinite(kappa_hat) else np.exp(x)
    rho = ((g[2] - 2 * g[1] + g[0]) / e**2) / ((g[2] - g[0]) / (2 * e))
    return H_S**2 / 12 * abs(d2 - rho * d1)


@settings(max_examples=60, deadline=None)
@given(st.floats(-30.0, -0.2), st.floats(-14.0, 0.0), st.sampled_from(["entropy", "reverse"]))
def test_corrected_reading_is_within_its_bound(lp, kappa, kind):
    """The exact expectation of the corrected reading is within step²/12·|ψ'' − ρψ'| (+1 %
    for the O(step³) terms) of ψ(log p)."""
    kappa_hat = float(np.float32(kappa))
    _, _, _, ell, pr = _tail_exact(lp, kappa_hat)
    truth = _psi(kind, np.array([lp]), kappa_hat)[0]
    bias = pr @ _read(kind, ell, kappa_hat, True) - truth
    bound = _bound(kind, lp, kappa_hat)
    assert abs(bias) <= 1.01 * bound + 1e-9 * abs(truth), (bias, bound)


@pytest.mark.parametrize("kind", ["entropy", "reverse"])
@pytest.mark.parametrize("grid_point", [40, 120])
@pytest.mark.parametrize("kappa", [-3.0, -9.5, float("-inf")])
def test_correction_has_mean_zero_over_the_grid_position(kind, grid_point, kappa):
    """Averaged over the value's position between two grid points (exactly, on 400 positions),
    the corrected bias is a small fraction of the uncorrected one (what is left is O(step³))."""
    raw, fixed = [], []
    for phi in (np.arange(400) + 0.5) / 400:
        lp = -(grid_point + phi) * H_S
        _, _, _, ell, pr = _tail_exact(lp, kappa)
        truth = _psi(kind, np.array([lp]), kappa)[0]
        raw.append(pr @ _read(kind, ell, kappa, False) - truth)
        fixed.append(pr @ _read(kind, ell, kappa, True) - truth)
    assert abs(np.mean(fixed)) < 0.1 * abs(np.mean(raw)), (np.mean(fixed), np.mean(raw))


# --- real SmolLM2 rows ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_rows():
    """Every fourth assistant-token row of the four short chats of tests/test_real_teacher.py, from
    SmolLM2-135M-Instruct (float32 [10, 49152]): peaked and flat rows, kept few so that the
    ~125 loss evaluations per case stay cheap."""
    return real_teacher_rows()[::4].contiguous()


CASES = [("forward_kl", "unbiased"), ("forward_kl", "unbiased_exact_mass"), ("ce", "unbiased"),
         ("reverse_kl", "unbiased")]


@pytest.mark.parametrize("kind,estimator", CASES)
def test_rounding_shift_on_real_teacher_rows_is_within_a_tenth_of_a_percent(real_rows, kind, estimator):
    z = real_rows
    rec = compressed_record(z, seed=5)
    student = z + torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
    after = rounding_shift(z, student, rec, kind=kind, estimator=estimator)
    assert abs(after["value"]) <= 1e-3 and after["grad"] <= 1e-3, after
    if kind == "ce":  # linear in p̂ and ŵ: exactly unbiased (float32 noise only)
        assert abs(after["value"]) <= 1e-5 and after["grad"] <= 2e-5, after
        return
    before = rounding_shift(z, student, rec, grid=False, kind=kind, estimator=estimator)
    # The codes read without the correction: the entropy term (forward KL's value) and
    # log p̂, log p̂ / q̂ (reverse KL's value and gradient) are biased by several times more.
    assert abs(before["value"]) >= 3 * abs(after["value"]), (before, after)
    if kind == "reverse_kl":
        assert before["grad"] >= 2 * after["grad"], (before, after)


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
        both = kd_loss(torch.cat([student, student]), mixed, kind=kind, reduction="none")
        alone = [kd_loss(student, collate_targets([items[v]]), kind=kind, reduction="none") for v in (2, 3)]
        torch.testing.assert_close(both, torch.cat(alone), rtol=1e-6, atol=1e-6)
        assert not torch.allclose(alone[0], alone[1], rtol=1e-4, atol=0)  # the versions' values differ
