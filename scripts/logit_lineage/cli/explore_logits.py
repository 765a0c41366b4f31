"""Explore a compressed-logits parquet: format, nucleus statistics, one example's
tokens with their top candidates, and a colour-coded token-probability view.

Colours: green p ≥ 0.9, cyan ≥ 0.5, yellow ≥ 0.1, red < 0.1, magenta = the
token is neither in the nucleus nor sampled. Pass --teacher to show token text
(decoded with the teacher's tokenizer) instead of ids.
"""
from __future__ import annotations

import json

import click
import numpy as np

from logit_lineage.cli.colour_view import colour_view
from logit_lineage.common.cli import main_guard
from logit_lineage.common.errors import LineageError
from logit_lineage.formats.logits import LogitsShard
from logit_lineage.formats.reader import nucleus_stats, token_distributions


@click.command(help=__doc__)
@click.argument("parquet", type=click.Path(exists=True, dir_okay=False))
@click.option("--row", type=int, default=0, show_default=True, help="Row (example) to show.")
@click.option("--tokens", "n_tokens", type=int, default=8, show_default=True, help="Tokens to detail.")
@click.option("--top", type=int, default=5, show_default=True, help="Candidates per token.")
@click.option("--teacher", default=None, help="Teacher dir or Hub id, to decode token text.")
@click.option("--stats/--no-stats", default=True, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print statistics as JSON only.")
@click.option("--plain", is_flag=True, help="No ANSI colours: [token|p] tags.")
@main_guard
def main(parquet, row, n_tokens, top, teacher, stats, as_json, plain):
    shard = LogitsShard(parquet)
    if as_json:
        click.echo(json.dumps({"params": shard.params, "rows": len(shard), "nucleus": nucleus_stats(shard)}, indent=2))
        return
    click.echo(f"{parquet}: {len(shard)} examples, format v2, vocab {shard.params['vocab_size']}, "
               f"top_p {shard.params['top_p']}, cap {shard.params['top_p_max_elements']}, "
               f"sampled {shard.params['sampled_n']}, teacher {shard.params.get('teacher')}")
    if stats:
        s = nucleus_stats(shard)
        if s["tokens"]:
            click.echo(f"tokens {s['tokens']}: nucleus size mean {s['nucleus_size_mean']:.2f} "
                       f"median {s['nucleus_size_median']:.0f} p99 {s['nucleus_size_p99']:.0f}, "
                       f"capped {100 * s['capped_fraction']:.1f}%, stored mass mean {s['nucleus_mass_mean']:.4f}")
    if len(shard) == 0:
        return
    if not 0 <= row < len(shard):
        raise LineageError(f"--row {row} out of range (0..{len(shard) - 1})", path=parquet)
    ex = shard.example(row)
    dists = token_distributions(ex)
    decode = str
    if teacher:
        from logit_lineage.teacher.load import load_tokenizer

        tok = load_tokenizer(teacher)
        decode = lambda i: tok.decode([int(i)])  # noqa: E731
    click.echo(f"\nexample {ex.index}: {ex.num_tokens} tokens")
    for d in dists[:n_tokens]:
        order = np.argsort(-d.top_probs)[:top]
        cands = ", ".join(f"{decode(d.top_ids[i])!r}:{d.top_probs[i]:.3f}" for i in order)
        p = d.token_prob
        click.echo(f"  pos {d.position:4d} {decode(d.token_id)!r:>12} p={'n/a' if p is None else f'{p:.3f}'} "
                   f"| nucleus {len(d.top_ids)} ({d.nucleus_mass:.3f}) | {cands}")
    click.echo("\n" + colour_view([decode(d.token_id) for d in dists], [d.token_prob for d in dists], ansi=not plain))


if __name__ == "__main__":
    main()
