"""Compress next-token distributions: nucleus + Gumbel-top-k tail sample.

For each row of logits (one kept position):
- logsumexp with float64 accumulation;
- the nucleus: the smallest set of top tokens whose mass reaches `top_p`
  (the crossing token included), at most `cap` tokens;
- `k` tail tokens drawn without replacement in proportion to their true
  probability, exactly as Gumbel-top-k in log space over the whole tail, plus
  the threshold κ, the (k+1)-th largest perturbed key, from which inclusion
  probabilities q_i = 1 − exp(−exp(log p_i − κ)) give unbiased tail weights.

Nothing sorts the vocabulary, and no per-token noise is drawn over it. The
nucleus comes from a small `torch.topk` (a wider one only for rows whose
nucleus is wider). The tail sample is Gumbel-top-k drawn "top-down" as an
exponential race: with keys log p_i − log E_i (E_i ~ Exp(1)), token i's clock
E_i / p_i rings in the order of its key, so the keys' order is a sequential
sample without replacement ∝ p, and by memorylessness the (k+1)-th ring comes
at x = Σ_{j=0..k} E'_j / M_j, where M_j is the tail mass left before the j-th
pick and E'_j are fresh Exp(1) draws. So κ = −log x, and the joint law of
(sampled tokens, κ) is that of Gumbel-top-k over all tail tokens, while a row
costs one float64 cumsum over the vocabulary plus ~2(k+1) random numbers.

Picks come from inverse-CDF draws with replacement on the cumsum, keeping
first occurrences (that is sampling without replacement, exactly). A row that
has not got k+1 distinct picks from its draws (a tail dominated by a few
tokens) draws again on what is left: a coordinate in [0, mass left) maps onto
the same cumsum past the gaps of its picks, so every round adds a token and
nothing over the vocabulary is redone. Remaining masses M_j are differences of
float64 sums; when one falls below 1e-6 of the row's tail mass, the row's
picks are zeroed and its cumsum recomputed, so M_j keeps ≥ 10 significant
digits. Tail weights are float64 exp(logit − base), base the row max (or the
tail's top logit where the tail lies more than 600 nats below it, beyond
float64's range). Only tokens below the cumsum's resolution (each < ~1e-16 of
the tail's mass) are drawn with distorted odds; together they hold < V·1e-16
of it, so a sample meets one with probability ~k·V·1e-16 (< 1e-9).

Random numbers come from a generator seeded per (seed, example, block of 64
kept tokens, round), so the sample depends on the example, never on the batch.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

import torch

NOISE_BLOCK = 64  # kept tokens of one example that share one generator draw
FIRST_TOPK = 8  # nucleus ranks the first, cheap top-k decides; wider rows get a second top-k
MASS_FLOOR = 1e-6  # defer a pick to a fresh cumsum when the tail mass left drops below this share
REBASE_BELOW = -600.0  # rows whose tail top is this far below the row max get weights relative to it
_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def block_seed(seed: int, example_index: int, block: int, rnd: int = 0) -> int:
    """A 63-bit generator seed for one round of draws of one block of one example."""
    h = _splitmix64(seed & _MASK64)
    h = _splitmix64(h ^ (example_index & _MASK64))
    h = _splitmix64(h ^ (block & _MASK64))
    if rnd:
        h = _splitmix64(h ^ (rnd & _MASK64))
    return h & ((1 << 63) - 1)


def draws_per_round(k: int) -> int:
    """Inverse-CDF draws per row and round (with replacement; first occurrences are kept)."""
    return 2 * (k + 1)


class RandomNoise:
    """Uniform draws for `compress_rows` from one generator (tests and benchmarks)."""

    def __init__(self, m: int, generator: torch.Generator | None = None, device="cpu"):
        self.m, self.generator, self.device = m, generator, device

    def draws(self, rnd: int, width: int, rows: torch.Tensor | None = None) -> torch.Tensor:
        out = torch.rand((self.m, width), generator=self.generator, dtype=torch.float64, device=self.device)
        return out if rows is None else out[rows]


class BlockNoise:
    """Uniform draws seeded per (seed, example, block, round): independent of batching.

    `units` lists the chunk's rows in order as (example_index, block, n_rows).
    """

    def __init__(self, seed: int, units: list[tuple[int, int, int]], generator: torch.Generator, device="cpu"):
        self.seed, self.units, self.generator, self.device = seed, units, generator, device
        self.starts = []
        start = 0
        for _, _, n in units:
            self.starts.append(start)
            start += n
        self.m = start

    @classmethod
    def for_example(cls, seed: int, example_index: int, m: int, generator: torch.Generator, device="cpu"):
        """Noise for the first m kept tokens of one example, in 64-token blocks."""
        units = [(example_index, b // NOISE_BLOCK, min(NOISE_BLOCK, m - b)) for b in range(0, m, NOISE_BLOCK)]
        return cls(seed, units, generator, device)

    def draws(self, rnd: int, width: int, rows: torch.Tensor | None = None) -> torch.Tensor:
        out = torch.empty((self.m, width), dtype=torch.float64, device=self.device)
        wanted = None
        if rows is not None:  # only the blocks holding these rows
            wanted = {bisect.bisect_right(self.starts, int(r)) - 1 for r in rows.tolist()}
        for u, ((example, block, n), start) in enumerate(zip(self.units, self.starts)):
            if wanted is not None and u not in wanted:
                continue
            self.generator.manual_seed(block_seed(self.seed, example, block, rnd))
            torch.rand((n, width), generator=self.generator, dtype=torch.float64, device=self.device,
                       out=out[start : start + n])
        return out if rows is None else out[rows]


@dataclass
class Compressed:
    """Per-row results of `compress_rows` (tensors on the compute device)."""

    logsumexp: torch.Tensor  # float64 [m]
    top_counts: torch.Tensor  # int64 [m]
    top_ids: torch.Tensor  # int64 [m, cap]; first top_counts[r] valid
    top_logits: torch.Tensor  # float32 [m, cap]
    sampled_counts: torch.Tensor  # int64 [m]
    sampled_ids: torch.Tensor  # int64 [m, k]; first sampled_counts[r] valid
    sampled_logits: torch.Tensor  # float32 [m, k]
    threshold: torch.Tensor  # float64 [m]; -inf when the whole positive tail was taken


def _gumbel_keys(logprobs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """log p + Gumbel, with Gumbel = −log(E), E = −log(1 − u) ~ Exp(1); float64."""
    exp1 = torch.log1p(-uniforms).neg_().clamp_(min=1e-300)
    return logprobs - torch.log(exp1)


class Workspace:
    """Reusable [rows, V] buffers: fresh multi-MB allocations cost more than the math."""

    def __init__(self):
        self._bufs: dict[tuple, torch.Tensor] = {}

    def get(self, name: str, rows: int, vocab: int, dtype: torch.dtype, device) -> torch.Tensor:
        key = (name, dtype, str(device), vocab)
        buf = self._bufs.get(key)
        if buf is None or buf.shape[0] < rows:
            buf = torch.empty((rows, vocab), dtype=dtype, device=device)
            self._bufs[key] = buf
        return buf[:rows]


def nucleus_counts(vals: torch.Tensor, lse: torch.Tensor, top_p: float, cap: int):
    """Nucleus sizes from sorted top values [r, n] of rows whose logsumexp is `lse` [r]:
    the fewest top ranks whose mass reaches top_p, at most cap. Returns (counts, known),
    unknown where the first min(cap, n) ranks neither reach top_p nor hit the cap."""
    lim = min(cap, vals.shape[1])
    reach = torch.cumsum(torch.exp(vals[:, :lim].double() - lse[:, None]), dim=-1) >= top_p
    hit = reach.any(-1)
    counts = torch.where(hit, reach.to(torch.int8).argmax(-1) + 1, torch.full_like(lse, cap, dtype=torch.long))
    known = hit | (lim == cap)
    return counts.long(), known


def nucleus_mask(logprobs: torch.Tensor, top_p: float, cap: int) -> torch.Tensor:
    """[r, V] bool: each row's nucleus as `compress_rows` keeps it, from log-probabilities."""
    vals, ids = logprobs.topk(min(cap, logprobs.shape[-1]), dim=-1)
    counts, _ = nucleus_counts(vals, torch.zeros(vals.shape[0], dtype=torch.float64, device=vals.device), top_p, cap)
    keep = torch.arange(vals.shape[1], device=vals.device)[None, :] < counts[:, None]
    return torch.zeros_like(logprobs, dtype=torch.bool).scatter_(1, ids, keep)


def _tail_max(vals: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The largest logit after the nucleus (−inf where nothing is left in `vals`)."""
    n = vals.shape[1]
    got = vals.gather(1, counts.clamp(max=n - 1)[:, None]).squeeze(1)
    return torch.where(counts < n, got, torch.full_like(got, float("-inf")))


def compress_rows(
    logits: torch.Tensor,
    noise,
    *,
    top_p: float,
    cap: int,
    k: int,
    workspace: Workspace | None = None,
) -> Compressed:
    """Compress rows of logits [m, V]; `noise.draws(round, width, rows)` gives uniforms."""
    ws = workspace or Workspace()
    m, vocab = logits.shape
    dev = logits.device
    logits = logits.float()
    cap = min(cap, vocab)

    # Nucleus, first pass: a cheap top-(FIRST_TOPK + 1); the extra rank is the tail's top.
    n1 = min(vocab, FIRST_TOPK + 1)
    vals, ids = torch.topk(logits, n1, dim=-1)  # sorted, descending
    rowmax = vals[:, :1]
    w = ws.get("w", m, vocab, torch.float64, dev)
    w.copy_(logits).sub_(rowmax).exp_()  # float64 from here: sum and cumsum cast nothing
    lse = rowmax.squeeze(1).double() + torch.log(w.sum(-1))
    counts, known = nucleus_counts(vals[:, : max(1, n1 - 1)] if n1 < vocab else vals, lse, top_p, cap)
    top_ids = torch.zeros((m, cap), dtype=torch.int64, device=dev)
    top_logits = torch.zeros((m, cap), dtype=torch.float32, device=dev)
    lim = min(cap, n1)
    top_ids[:, :lim] = ids[:, :lim]
    top_logits[:, :lim] = vals[:, :lim]
    tail_max = _tail_max(vals, counts)
    wide = (~known).nonzero().squeeze(1)
    if wide.numel():  # nuclei wider than the first pass: top-(cap + 1) for those rows only
        vals2, ids2 = torch.topk(logits[wide], min(vocab, cap + 1), dim=-1)
        c2, _ = nucleus_counts(vals2, lse[wide], top_p, cap)
        counts[wide] = c2
        top_ids[wide] = ids2[:, :cap]
        top_logits[wide] = vals2[:, :cap]
        tail_max[wide] = _tail_max(vals2, c2)

    # Tail weights w_i = exp(logit_i − base), the nucleus zeroed.
    base = rowmax.squeeze(1).double()
    deep = (torch.isfinite(tail_max) & (tail_max - rowmax.squeeze(1) < REBASE_BELOW)).nonzero().squeeze(1)
    if deep.numel():
        w[deep] = torch.exp(logits[deep].double() - tail_max[deep, None].double())
        base[deep] = tail_max[deep].double()
    in_nucleus = torch.arange(cap, device=dev)[None, :] < counts[:, None]
    nr, nc = in_nucleus.nonzero(as_tuple=True)
    w[nr, top_ids[nr, nc]] = 0.0

    sel, have, x = _race(w, noise, k, ws)
    threshold = torch.where(have > k, base - lse - torch.log(x), torch.full_like(x, float("-inf")))
    sampled_ids = sel[:, :k]
    return Compressed(
        logsumexp=lse,
        top_counts=counts,
        top_ids=top_ids,
        top_logits=top_logits,
        sampled_counts=have.clamp(max=k),
        sampled_ids=sampled_ids,
        sampled_logits=logits.gather(1, sampled_ids),
        threshold=threshold,
    )


def _race(w: torch.Tensor, noise, k: int, ws: Workspace):
    """Exponential race over tail weights w [m, V] (float64, ≥ 0): the first k+1 picks
    (ids [m, k+1]), how many there are (≤ k+1; fewer only when the positive tail is
    smaller), and the time x of the (k+1)-th ring in units of w.

    Round 0 draws on the cumsum of w. A later round draws on what is left: a
    coordinate t in [0, mass left) maps to t + (mass of the picks that lie
    before it) on the same cumsum, so nothing over the vocabulary is redone.
    Only a row whose mass left falls below MASS_FLOOR of its tail gets its picks
    zeroed in w and a fresh cumsum (in place), which keeps every coordinate
    well above float64 resolution.
    """
    m, vocab = w.shape
    dev = w.device
    need = k + 1
    width = draws_per_round(k)
    first = noise.draws(0, need + width)
    expo = torch.log1p(-first[:, :need]).neg_().clamp_(min=1e-300)
    u = first[:, need:]
    sel = torch.zeros((m, need), dtype=torch.int64, device=dev)
    have = torch.zeros(m, dtype=torch.int64, device=dev)
    gaps = torch.zeros((m, need), dtype=torch.float64, device=dev)  # E'_j / M_j, one slot per pick
    cum = torch.cumsum(w, dim=-1, out=ws.get("cum", m, vocab, torch.float64, dev))
    scale = cum[:, -1].clone()  # each row's tail mass: what float64 resolution is relative to
    slots = torch.arange(need, device=dev)
    going = scale > 0
    rnd = 0
    while True:
        # Every round works on all rows (no [rows, V] copies); rows not going take nothing.
        if rnd == 0:  # nothing taken yet
            left0 = cum[:, -1]
            shift = 0.0
        else:
            # Picks so far in vocabulary order (padding sorts last), and the gaps they leave.
            ex_ids = torch.where(slots[None, :] < have[:, None], sel, vocab).sort(dim=1).values
            real = ex_ids < vocab
            ex_idx = ex_ids.clamp(max=vocab - 1)
            ex_w = torch.where(real, w.gather(1, ex_idx), 0.0)
            ex_incl = torch.cumsum(ex_w, 1)
            below = torch.where(ex_idx > 0, cum.gather(1, (ex_idx - 1).clamp(min=0)), 0.0)
            starts = torch.where(real, below - (ex_incl - ex_w), float("inf"))  # gap positions, mass-left axis
            left0 = cum[:, -1] - ex_incl[:, -1]  # mass not yet taken
        left0 = left0.clamp(min=0.0)
        t = torch.minimum(u * left0[:, None], torch.nextafter(left0, torch.zeros_like(left0))[:, None])
        if rnd:
            before = torch.searchsorted(starts, t, right=True)  # picks lying before each coordinate
            shift = torch.where(before > 0, ex_incl.gather(1, (before - 1).clamp(min=0)), 0.0)
        idx = torch.searchsorted(cum, t + shift, right=True).clamp_(max=vocab - 1)
        srt, perm = torch.sort(idx, dim=1, stable=True)
        fresh_sorted = torch.ones_like(srt, dtype=torch.bool)
        fresh_sorted[:, 1:] = srt[:, 1:] != srt[:, :-1]
        fresh = torch.empty_like(fresh_sorted).scatter_(1, perm, fresh_sorted)
        fresh &= going[:, None]
        if rnd:  # a coordinate rounded into a pick's gap
            fresh &= ~(idx[:, :, None] == torch.where(real, ex_ids, -1)[:, None, :]).any(-1)
        picked_w = torch.where(fresh, w.gather(1, idx), 0.0)
        left = left0[:, None] - (torch.cumsum(picked_w, 1) - picked_w)  # tail mass left before each pick
        rank = torch.cumsum(fresh, 1)
        floor = MASS_FLOOR * scale
        ok = fresh & (rank <= (need - have)[:, None]) & (left >= floor[:, None])
        rr, cc = ok.nonzero(as_tuple=True)
        slot = have[rr] + rank[rr, cc] - 1
        sel[rr, slot] = idx[rr, cc]
        gaps[rr, slot] = expo[rr, slot] / left[rr, cc]
        have += ok.sum(1)
        mass_left = left0 - torch.where(ok, picked_w, 0.0).sum(1)
        going &= have < need
        # The difference is only good to ~1e-16 of the scale: below the floor (or ≤ 0), recount.
        low = (going & (mass_left < floor)).nonzero().squeeze(1)
        if low.numel():  # too little left for this cumsum's resolution: zero the picks, redo the row
            wl = w[low]
            wl.scatter_(1, torch.where(slots[None, :] < have[low][:, None], sel[low], sel[low][:, :1]), 0.0)
            w[low] = wl
            cum[low] = torch.cumsum(wl, dim=-1)
            scale[low] = cum[low, -1]
            going[low] &= scale[low] > 0
        if not bool(going.any()):
            return sel, have, gaps.sum(1)  # a fixed order: the same bits on any device and chunking
        rnd += 1
        u = torch.zeros((m, width), dtype=torch.float64, device=dev)
        rows = going.nonzero().squeeze(1)
        u[rows] = noise.draws(rnd, width, rows)


def reference_compress_row(logits_row: torch.Tensor, uniforms_row: torch.Tensor, *, top_p: float, cap: int, k: int):
    """Full-vocabulary reference (sort + Gumbel over all): for tests only."""
    lp = torch.log_softmax(logits_row.double(), -1)
    order = torch.argsort(lp, descending=True, stable=True)
    cum = torch.cumsum(lp[order].exp(), 0)
    reach = (cum >= top_p).nonzero()
    count = min(cap, int(reach[0]) + 1 if reach.numel() else cap)
    nucleus = order[:count]
    keys = _gumbel_keys(lp, uniforms_row)
    keys[nucleus] = float("-inf")
    best = torch.topk(keys, min(k + 1, keys.numel())).indices
    return nucleus, best[:k], keys[best]
