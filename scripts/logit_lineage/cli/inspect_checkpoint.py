"""Tell which weight layout a checkpoint uses, and optionally convert it to fused.

Prints `Format: small` (split attention: qkv_w [3, hdim, dim] or c_attn or q/k/v, plus
c_proj.weight; CastedLinear c_fc/c_proj MLP; needs conversion) or `Format: medium` (fused
qkvo_w [4, hdim, dim], fc_w/proj_w; loads directly), then details: where the weights sit,
stripped `_orig_mod.` prefixes, vocab rows, and the sort-grid name fields when the file
name follows that convention. Reads with torch.load(weights_only=True) only.

--convert-to OUT writes a copy whose weights are in the fused (medium) layout, with the
same container keys (model_state_dict / model / state_dict / bare).
"""
from __future__ import annotations

from pathlib import Path

import click

from logit_lineage.common.cli import main_guard


@click.command(help=__doc__)
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--convert-to", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a fused-layout copy here.")
@main_guard
def main(checkpoint, convert_to):
    import torch

    from logit_lineage.common.atomic import atomic_path
    from logit_lineage.common.errors import LineageError
    from logit_lineage.sortgrid.checkpoint import find_state_dict, load_torch_file
    from logit_lineage.sortgrid.checkpoint_layout import (
        LAYOUT_DESCRIPTIONS,
        VOCAB_KEY_RE,
        detect_layout,
        strip_wrapper_prefixes,
        to_fused,
    )
    from logit_lineage.sortgrid.names import parse_checkpoint_name

    obj = load_torch_file(checkpoint)
    key, state = find_state_dict(obj, checkpoint)
    stripped, n_stripped = strip_wrapper_prefixes(state, checkpoint)
    layout = detect_layout(stripped, checkpoint)
    click.echo(f"Format: {layout}")
    click.echo(f"Layout: {LAYOUT_DESCRIPTIONS[layout]}")
    click.echo(f"Weights: {'file itself' if key is None else repr(key)}, {len(state)} tensors, "
               f"{sum(t.numel() for t in state.values()):,} parameters")
    if n_stripped:
        click.echo(f"Prefixes: stripped _orig_mod./module. from {n_stripped} keys")
    for name, t in sorted(stripped.items()):
        if VOCAB_KEY_RE.fullmatch(name):
            click.echo(f"Vocab rows: {name} {list(t.shape)}")
    if isinstance(obj, dict) and "iters_done" in obj:
        click.echo(f"Iterations done: {obj['iters_done']}")
    try:
        fields = parse_checkpoint_name(checkpoint)
        click.echo("Name: " + ", ".join(f"{k}={v}" for k, v in vars(fields).items()))
    except LineageError:
        pass
    if convert_to is not None:
        fused = to_fused(stripped, checkpoint)
        out = fused if key is None else {**obj, key: fused}
        with atomic_path(convert_to) as tmp:
            torch.save(out, tmp)
        click.echo(f"Wrote fused (medium) copy: {convert_to}")


if __name__ == "__main__":
    main()
