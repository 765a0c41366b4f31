"""Divergence between predictions stored in dense logit dumps (the original dense-dump tool's analysis).

With one dump: predictions are grouped by (sample_idx, POSITION_FIELD); each
is compared with its position's reference, the last by --order-by (e.g.
timestep: the final prediction), and the comparisons are summarized per value
of --group-by (e.g. horizon). With two dumps: entries are paired by
--match-on fields (default example_idx,position) and the first dump is
compared with the second. Measures: KL(P ‖ P_ref) and JS in nats, top-1
change, top-5 overlap. Prints the summary; --json writes pairs and summary.
DUMP is a dump's .json.gz summary.
"""
from __future__ import annotations

import json

import click

from logit_lineage.common.atomic import write_json
from logit_lineage.common.cli import main_guard
from logit_lineage.common.errors import LineageError
from logit_lineage.fidelity.divergence import METRICS, analyze_divergence, compare_dumps, format_divergence_summary
from logit_lineage.formats.dense_dump import DenseDump


def _fields(dump: DenseDump, names, what: str) -> None:
    known = {"key", "sample_idx", "entry_idx", "example_idx", "position", *dump.summary["fields"]}
    for name in names:
        if name and name not in known:
            raise LineageError(f"{what} field '{name}' is not in the dump's metadata (fields: {sorted(known)})",
                               path=dump.metadata_path)


@click.command(help=__doc__)
@click.argument("dump", type=click.Path(exists=True, dir_okay=False))
@click.argument("other", type=click.Path(exists=True, dir_okay=False), required=False)
@click.option("--group-by", default=None, help="Metadata field to summarize by (e.g. horizon).")
@click.option("--order-by", default=None, help="One dump: field ordering a position's predictions; "
                                                "the last is the reference.")
@click.option("--position-field", default="position", show_default=True,
              help="One dump: the field naming the predicted position.")
@click.option("--sample-idx", type=int, default=None, help="Only this sample (loads only its tensors).")
@click.option("--match-on", default="example_idx,position", show_default=True,
              help="Two dumps: comma-separated fields that identify the same position.")
@click.option("--metrics", default=",".join(METRICS), show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write pairs and summary here.")
@main_guard
def main(dump, other, group_by, order_by, position_field, sample_idx, match_on, metrics, json_path):
    metric_list = [m for m in metrics.split(",") if m]
    bad = set(metric_list) - set(METRICS)
    if bad:
        raise LineageError(f"unknown metrics {sorted(bad)} (choose from {','.join(METRICS)})")
    first = DenseDump(dump)
    keys = None if sample_idx is None else first.select(sample_idx=sample_idx)
    if other is None:
        _fields(first, [group_by, order_by, position_field], "--group-by/--order-by/--position-field")
        stats = analyze_divergence(first.iter_entries(keys), group_by=group_by, order_by=order_by,
                                   position_field=position_field, metrics=metric_list)
    else:
        second = DenseDump(other)
        if first.vocab_size != second.vocab_size:
            raise LineageError(f"vocab {first.vocab_size} here, {second.vocab_size} in {other}", path=dump)
        match = [f for f in match_on.split(",") if f]
        _fields(first, match + [group_by], "--match-on/--group-by")
        _fields(second, match, "--match-on")
        stats = compare_dumps(first.load(keys), second.load(), match_on=match, group_by=group_by,
                              metrics=metric_list)
    click.echo(format_divergence_summary(stats))
    if json_path:
        write_json(json_path, json.loads(json.dumps(stats, default=str)))


if __name__ == "__main__":
    main()
