# The sort-grid chain: sort-grid checkpoints. Paths and formats: docs/SORTGRID.md.
#
#   {RESULTS}/sortgrid/checkpoints/<ln>/<regime>/<group>/task_XXXX/seed<S>/{Checkpoint|Final}_<stem>_iters<N>.pt
#   {RESULTS}/sortgrid/eval/<same run dirs>/{Checkpoint|Final}_<stem>_iters<N>.json
#   {RESULTS}/sortgrid/sort_grid_table.csv, sort_grid_summary.csv, sort_grid_generalization.png
#
# Any checkpoint of the original grid (config/sort_grid_full.yaml) can be built by naming
# its path (the path says what to train; optimization settings and iteration counts come
# from the config).
from snakemake.exceptions import WorkflowError

from logit_lineage.sortgrid.names import STEM_PATTERN
from logit_lineage.sortgrid.tree import (
    GROUP_PATTERN,
    LAYERNORM_DIR_PATTERN,
    REGIME_PATTERN,
    SEED_PATTERN,
    TASK_PATTERN,
)
from logit_lineage.common.errors import LineageError
from logit_lineage.sortgrid.grid import expand_grid

SG = config["sortgrid"]
SG_TRAIN = SG["training"]
SG_EVAL = SG["evaluation"]
SG_RES = SG["resources"]
SORTGRID = f"{RESULTS}/sortgrid"
SORT_RUN = "{ln_dir}/{regime}/{group}/task_{task}/seed{seed}"
SORT_CKPT_DIR = f"{SORTGRID}/checkpoints/{SORT_RUN}"
SORT_EVAL_DIR = f"{SORTGRID}/eval/{SORT_RUN}"
SORT_INTER_ITERS = sorted(set(SG_TRAIN["checkpoint_iters"]))
SORT_RUN_CONSTRAINTS = dict(
    ln_dir=LAYERNORM_DIR_PATTERN,
    regime=REGIME_PATTERN,
    group=GROUP_PATTERN,
    task=TASK_PATTERN,
    seed=SEED_PATTERN,
)

try:
    SORT_GRID_RUNS = expand_grid(SG)
except LineageError as exc:
    raise WorkflowError(str(exc)) from None

SORT_EVALS = [
    f"{SORTGRID}/eval/{run.location.relpath()}/{name.format().removesuffix('.pt')}.json"
    for run in SORT_GRID_RUNS
    for name in run.checkpoints
]


rule train_sort_model:
    """Train one run of the grid; writes its intermediate and final checkpoints."""
    input:
        **code("train_sort_model.py"),
    output:
        final=f"{SORT_CKPT_DIR}/Final_{{stem}}_iters{SG_TRAIN['max_iters']}.pt",
        intermediate=[
            f"{SORT_CKPT_DIR}/Checkpoint_{{stem}}_iters{it}.pt"
            for it in SORT_INTER_ITERS
        ],
    log:
        logs(f"sortgrid/train/{SORT_RUN}/{{stem}}.log"),
    benchmark:
        benchmarks(f"sortgrid/train/{SORT_RUN}/{{stem}}.tsv")
    wildcard_constraints:
        **SORT_RUN_CONSTRAINTS,
        stem=STEM_PATTERN,
    conda:
        env("sortgrid")
    threads: SG_RES["threads"]
    resources:
        mem_mb=SG_RES["train_mem_mb"],
        runtime=SG_RES["train_runtime"],
    params:
        script=SCRIPT["train_sort_model"],
        intermediate=lambda wildcards, output: " ".join(
            f"--intermediate {q(path)}" for path in output.intermediate
        ),
        batch_size=SG_TRAIN["batch_size"],
        learning_rate=SG_TRAIN["learning_rate"],
        min_lr=SG_TRAIN["min_lr"],
        warmup_iters=SG_TRAIN["warmup_iters"],
        weight_decay=SG_TRAIN["weight_decay"],
        grad_clip=SG_TRAIN["grad_clip"],
        log_every=SG_TRAIN["log_every"],
        device=SG["device"],
    shell:
        "python {params.script:q} --final {output.final:q} {params.intermediate}"
        " --batch-size {params.batch_size:q} --learning-rate {params.learning_rate:q}"
        " --min-lr {params.min_lr:q} --warmup-iters {params.warmup_iters:q}"
        " --weight-decay {params.weight_decay:q} --grad-clip {params.grad_clip:q}"
        " --log-every {params.log_every:q} --device {params.device:q} --threads {threads}"
        " 2> {log:q}"


rule evaluate_sort_checkpoint:
    """Exact match and token accuracy on the test lengths, per K, for one checkpoint."""
    input:
        **code("evaluate_sort_model.py"),
        checkpoint=f"{SORT_CKPT_DIR}/{{ckpt}}.pt",
    output:
        metrics=f"{SORT_EVAL_DIR}/{{ckpt}}.json",
    log:
        logs(f"sortgrid/eval/{SORT_RUN}/{{ckpt}}.log"),
    benchmark:
        benchmarks(f"sortgrid/eval/{SORT_RUN}/{{ckpt}}.tsv")
    wildcard_constraints:
        **SORT_RUN_CONSTRAINTS,
        ckpt=f"(?:Checkpoint|Final)_{STEM_PATTERN}_iters[0-9]+",
    conda:
        env("sortgrid")
    threads: SG_RES["threads"]
    resources:
        mem_mb=SG_RES["eval_mem_mb"],
        runtime=SG_RES["eval_runtime"],
    params:
        script=SCRIPT["evaluate_sort_model"],
        samples=SG_EVAL["samples_per_length"],
        batch_size=SG_EVAL["batch_size"],
        seed=SG_EVAL["seed"],
        device=SG["device"],
    shell:
        "python {params.script:q} {input.checkpoint:q} --output {output.metrics:q}"
        " --samples-per-length {params.samples:q} --batch-size {params.batch_size:q}"
        " --eval-seed {params.seed:q} --device {params.device:q} --threads {threads}"
        " 2> {log:q}"


rule tabulate_sort_grid:
    """The grid table (per checkpoint and per configuration) and the generalization plot."""
    input:
        **code("tabulate_sort_grid.py"),
        evaluations=SORT_EVALS,
    output:
        table=report(
            f"{SORTGRID}/sort_grid_table.csv",
            caption="../report/sortgrid_table.rst",
            category="Sort grid",
        ),
        summary=report(
            f"{SORTGRID}/sort_grid_summary.csv",
            caption="../report/sortgrid_summary.rst",
            category="Sort grid",
        ),
        plot=report(
            f"{SORTGRID}/sort_grid_generalization.png",
            caption="../report/sortgrid_generalization.rst",
            category="Sort grid",
        ),
    log:
        logs("sortgrid/tabulate_sort_grid.log"),
    localrule: True
    conda:
        env("sortgrid")
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        script=SCRIPT["tabulate_sort_grid"],
    shell:
        "python {params.script:q} {input.evaluations:q} --table {output.table:q}"
        " --summary {output.summary:q} --plot {output.plot:q} 2> {log:q}"


if SG["enabled"]:
    ALL_TARGETS.extend(
        [
            rules.tabulate_sort_grid.output.table,
            rules.tabulate_sort_grid.output.summary,
            rules.tabulate_sort_grid.output.plot,
        ]
    )
