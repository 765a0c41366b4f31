# The student chain: students trained from the compressed logits, the end-to-end proof that
# the format serves its purpose. Methods, split and metrics: docs/STUDENT.md.
#
#   {RESULTS}/student/examples.parquet                        train / held-out examples with token ids
#   {RESULTS}/student/dense/shard-<N>.json.gz (+ .safetensors, .metadata.json)
#                                                             the teacher's logits at every kept token,
#                                                             computed once: dense targets and the held-out
#                                                             reference of every run
#   {RESULTS}/student/<method>/seed-<S>/model.safetensors     one student (config in its metadata)
#   {RESULTS}/student/<method>/seed-<S>/eval.json             its training record and held-out metrics
#   {RESULTS}/student/formats/<F>/logits/shard-<N>.parquet     the shards again in format variant F
#   {RESULTS}/student/formats/<F>/compressed/seed-<S>/…        a compressed student on variant F
#   {RESULTS}/student/student_table.csv, student_summary.json, student_kl.png   (in --report)
#   {RESULTS}/benchmarks/student/train_student/<method>/seed-<S>.timings.json  one run's wall times
#   {RESULTS}/benchmarks/student/student_timings.csv                          all runs' (in --report)
from logit_lineage.student import METHODS as STUDENT_METHODS

STUDENT = config["student"]
STUDENT_DIR = f"{RESULTS}/student"
STUDENT_RUN = "{method}/seed-{seed}"
STUDENT_LOGITS = LOGITS_LIST  # the shards, as one list file
# Each run's wall times go beside the benchmarks, out of the results, which depend on their
# inputs alone (a rerun, or the same run on SLURM, writes the same bytes).
STUDENT_TIMINGS = benchmarks(f"student/train_student/{STUDENT_RUN}.timings.json")
STUDENT_RUNS = dict(method=STUDENT["methods"], seed=STUDENT["seeds"])
# Format variants (student.formats): each extracted again and learnt by method compressed.
FORMATS = STUDENT["formats"] if "compressed" in STUDENT["methods"] else {}
FORMAT_SHARD = f"{STUDENT_DIR}/formats/{{fmt}}/logits/shard-{{shard}}.parquet"
FORMAT_RUN = f"formats/{{fmt}}/{STUDENT_RUN}"
FORMAT_RUNS = dict(fmt=list(FORMATS), method=["compressed"], seed=STUDENT["seeds"])
FORMAT_TIMINGS = benchmarks(f"student/train_student/{FORMAT_RUN}.timings.json")
FORMAT_LOGITS = {
    f: shard_list(f"student-format-{f}", FORMAT_SHARD.replace("{fmt}", f))
    for f in FORMATS
}
# Plain strings, not params functions: evaluated once, not once per job.
STUDENT_TIMING_ARGS = " ".join(
    f"--timing {q(p)}"
    for p in expand(STUDENT_TIMINGS, **STUDENT_RUNS)
    + expand(FORMAT_TIMINGS, **FORMAT_RUNS)
)
STUDENT_LOGITS_ARGS = f"--logits @{q(STUDENT_LOGITS)}"
STUDENT_DENSE = f"{STUDENT_DIR}/dense/shard-{{shard}}.json.gz"
STUDENT_DENSE_LIST = shard_list("student-dense", STUDENT_DENSE)
STUDENT_DENSE_ARGS = f"--dense @{q(STUDENT_DENSE_LIST)}"
# The gradient yardstick runs in the compressed runs of the first seed (its cost is three
# backward passes per held-out batch, before and after training).
YARDSTICK_ARGS = {
    s: f"--yardstick-batches {STUDENT['yardstick_batches'] if s == min(STUDENT['seeds']) else 0}"
    for s in STUDENT["seeds"]
}
FORMAT_LOGITS_ARGS = {f: f"--logits @{q(path)}" for f, path in FORMAT_LOGITS.items()}
FORMAT_COMPRESS_ARGS = {f: compress_args(v) for f, v in FORMATS.items()}
FORMAT_NAMES = "|".join(re.escape(f) for f in FORMATS) or "^$"
STUDENT_TEACHER_ARGS = " ".join(
    filter(
        None,
        [opt("--teacher", TEACHER), opt("--revision", DISTILL["teacher_revision"])],
    )
)


rule prepare_student_data:
    """The shards' examples tokenized once and split into training and held-out sets."""
    input:
        **code("prepare_student_data.py"),
        teacher=TEACHER_INPUT,
        dataset=DATASET_INPUT,
        logits=STUDENT_LOGITS,
    output:
        f"{STUDENT_DIR}/examples.parquet",
    log:
        logs("student/prepare_student_data.log"),
    benchmark:
        benchmarks("student/prepare_student_data.tsv")
    conda:
        env("student")
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        script=SCRIPT["prepare_student_data"],
        source=" ".join(
            filter(
                None,
                [
                    STUDENT_TEACHER_ARGS,
                    opt("--chat-template", DISTILL["chat_template"]),
                    opt("--dataset", DATASET),
                    opt("--split", DISTILL["dataset_split"]),
                    opt("--dataset-config", DISTILL["dataset_config"]),
                    opt("--messages-column", DISTILL["messages_column"]),
                ],
            )
        ),
        logits=STUDENT_LOGITS_ARGS,
        split=(
            f"--heldout-every {STUDENT['heldout_every']} "
            f"--heldout-max-examples {STUDENT['heldout_max_examples']} "
            + opt("--max-train-examples", STUDENT["max_train_examples"])
        ),
    shell:
        "python {params.script:q} {params.source} {params.logits} {params.split} --output {output:q} 2> {log:q}"


use rule dump_dense_logits as dump_student_dense with:
    output:
        summary=STUDENT_DENSE,
        tensors=f"{STUDENT_DIR}/dense/shard-{{shard}}.safetensors",
        metadata=f"{STUDENT_DIR}/dense/shard-{{shard}}.metadata.json",
    log:
        logs(f"student/dump_student_dense/shard-{{shard}}.log"),
    benchmark:
        benchmarks(f"student/dump_student_dense/shard-{{shard}}.tsv")
    wildcard_constraints:
        shard=r"\d+",
    resources:
        mem_mb=STUDENT["dense_mem_mb"],
        runtime=STUDENT["dense_runtime"],
    params:
        script=rules.dump_dense_logits.params.script,
        source=rules.dump_dense_logits.params.source,
        sample=f"--all-tokens --store-dtype {STUDENT['dense_dtype']}",
        runtime=rules.dump_dense_logits.params.runtime,


rule train_student:
    """One student: one method, one seed; held-out KL / CE / top-1 against the teacher (GPU rule)."""
    input:
        **code("train_student.py"),
        # A plain path: with another rule's output object here, snakemake hashes the whole
        # logits list once per file of it (quadratic in the shard count).
        examples=str(rules.prepare_student_data.output[0]),
        logits=STUDENT_LOGITS,
        dense=STUDENT_DENSE_LIST,
        teacher=TEACHER_INPUT,
    output:
        checkpoint=f"{STUDENT_DIR}/{STUDENT_RUN}/model.safetensors",
        eval=f"{STUDENT_DIR}/{STUDENT_RUN}/eval.json",
        timings=STUDENT_TIMINGS,
    log:
        logs(f"student/train_student/{STUDENT_RUN}.log"),
    benchmark:
        benchmarks(f"student/train_student/{STUDENT_RUN}.tsv")
    wildcard_constraints:
        method="|".join(STUDENT_METHODS),
        seed=r"\d+",
    conda:
        env("student")
    threads: STUDENT["threads"]
    resources:
        mem_mb=STUDENT["train_mem_mb"],
        runtime=STUDENT["train_runtime"],
    params:
        script=SCRIPT["train_student"],
        label="",
        teacher=STUDENT_TEACHER_ARGS,
        logits=STUDENT_LOGITS_ARGS,
        training=(
            f"--steps {STUDENT['steps']} --batch-size {STUDENT['batch_size']} "
            f"--learning-rate {STUDENT['learning_rate']} --warmup-steps {STUDENT['warmup_steps']} "
            f"--weight-decay {STUDENT['weight_decay']} --grad-clip {STUDENT['grad_clip']} "
            f"--curve-every {STUDENT['curve_every']} --precision {STUDENT['precision']}"
        ),
        yardstick=lambda wildcards: YARDSTICK_ARGS[int(wildcards.seed)],
        dense=STUDENT_DENSE_ARGS,
        model=(
            f"--init {STUDENT['init']} "
            + ("--freeze-embeddings " if STUDENT["freeze_embeddings"] else "")
            + f"--depth-fraction {STUDENT['depth_fraction']} --width-fraction {STUDENT['width_fraction']} "
            f"--teacher-dtype {STUDENT['teacher_dtype']} --eval-batch-size {STUDENT['eval_batch_size']}"
        ),
        device=STUDENT["device"],
    shell:
        "python {params.script:q} --method {wildcards.method:q} --seed {wildcards.seed:q} "
        "--examples {input.examples:q} {params.logits} {params.dense} {params.label} {params.teacher} "
        "{params.training} {params.yardstick} {params.model} "
        "--device {params.device:q} --threads {threads} "
        "--checkpoint {output.checkpoint:q} --output {output.eval:q} --timings {output.timings:q} "
        "2> {log:q}"


use rule extract_logits as extract_student_format with:
    output:
        parquet=FORMAT_SHARD,
    log:
        logs(f"student/extract_student_format/{{fmt}}/shard-{{shard}}.log"),
    benchmark:
        benchmarks(f"student/extract_student_format/{{fmt}}/shard-{{shard}}.tsv")
    wildcard_constraints:
        fmt=FORMAT_NAMES,
        shard=r"\d+",
    params:
        script=rules.extract_logits.params.script,
        source=rules.extract_logits.params.source,
        compress=lambda wildcards: FORMAT_COMPRESS_ARGS[wildcards.fmt],
        batching=rules.extract_logits.params.batching,
        runtime=rules.extract_logits.params.runtime,
        labels=rules.extract_logits.params.labels,


use rule train_student as train_student_format with:
    input:
        **code("train_student.py"),
        examples=str(rules.prepare_student_data.output[0]),
        logits=lambda wildcards: FORMAT_LOGITS[wildcards.fmt],
        dense=STUDENT_DENSE_LIST,
        teacher=TEACHER_INPUT,
    output:
        checkpoint=f"{STUDENT_DIR}/{FORMAT_RUN}/model.safetensors",
        eval=f"{STUDENT_DIR}/{FORMAT_RUN}/eval.json",
        timings=FORMAT_TIMINGS,
    log:
        logs(f"student/train_student/{FORMAT_RUN}.log"),
    benchmark:
        benchmarks(f"student/train_student/{FORMAT_RUN}.tsv")
    wildcard_constraints:
        fmt=FORMAT_NAMES,
        method="compressed",
        seed=r"\d+",
    params:
        script=rules.train_student.params.script,
        label=lambda wildcards: f"--format-label {q(wildcards.fmt)}",
        teacher=rules.train_student.params.teacher,
        logits=lambda wildcards: FORMAT_LOGITS_ARGS[wildcards.fmt],
        training=rules.train_student.params.training,
        yardstick=rules.train_student.params.yardstick,
        dense=rules.train_student.params.dense,
        model=rules.train_student.params.model,
        device=rules.train_student.params.device,


rule tabulate_students:
    """Every method and seed: the table, the summary (mean ± std, gap closed) and the plot."""
    input:
        **code("tabulate_students.py"),
        evaluations=expand(rules.train_student.output.eval, **STUDENT_RUNS)
        + expand(rules.train_student_format.output.eval, **FORMAT_RUNS),
        timings=expand(rules.train_student.output.timings, **STUDENT_RUNS)
        + expand(rules.train_student_format.output.timings, **FORMAT_RUNS),
    output:
        table=report(
            f"{STUDENT_DIR}/student_table.csv",
            caption="../report/student_table.rst",
            category="Students",
        ),
        summary=report(
            f"{STUDENT_DIR}/student_summary.json",
            caption="../report/student_summary.rst",
            category="Students",
        ),
        plot=report(
            f"{STUDENT_DIR}/student_kl.png",
            caption="../report/student_plot.rst",
            category="Students",
        ),
        timings=report(
            benchmarks("student/student_timings.csv"),
            caption="../report/student_timings.rst",
            category="Students",
        ),
    log:
        logs("student/tabulate_students.log"),
    localrule: True
    conda:
        env("student")
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        script=SCRIPT["tabulate_students"],
        timings=STUDENT_TIMING_ARGS,
    shell:
        "python {params.script:q} {input.evaluations:q} --table {output.table:q} "
        "--summary {output.summary:q} --plot {output.plot:q} --timings {output.timings:q} "
        "{params.timings} 2> {log:q}"


if STUDENT["enabled"]:
    ALL_TARGETS.extend(
        [
            rules.tabulate_students.output.table,
            rules.tabulate_students.output.summary,
            rules.tabulate_students.output.plot,
            rules.tabulate_students.output.timings,
        ]
    )
