# Chain A: lengths → length-sorted shards → compressed teacher logits per shard.

DISTILL = config["distill"]
DISTILL_DIR = f"{RESULTS}/distill"
SHARDS = [f"{i:05d}" for i in range(DISTILL["n_shards"])]
USE_DEMO_TEACHER = DISTILL["teacher"] == "demo"
USE_DEMO_DATASET = DISTILL["dataset"] == "demo"


TEACHER = rules.build_demo_teacher.output[0] if USE_DEMO_TEACHER else DISTILL["teacher"]
DATASET = rules.make_demo_dataset.output[0] if USE_DEMO_DATASET else DISTILL["dataset"]
# The demo teacher and dataset are DAG nodes; a real teacher or dataset is a Hub id or a
# path (no rule). Plain lists, not input functions: evaluated once, not once per job.
TEACHER_INPUT = [TEACHER] if USE_DEMO_TEACHER else []
DATASET_INPUT = [DATASET] if USE_DEMO_DATASET else []


SOURCE_ARGS = " ".join(
    filter(
        None,
        [
            opt("--teacher", TEACHER),
            opt("--revision", DISTILL["teacher_revision"]),
            opt("--chat-template", DISTILL["chat_template"]),
            opt("--dataset", DATASET),
            opt("--split", DISTILL["dataset_split"]),
            opt("--dataset-config", DISTILL["dataset_config"]),
            opt("--messages-column", DISTILL["messages_column"]),
            opt("--limit", DISTILL["limit"]),
            "--exclude-think" if DISTILL["exclude_think"] else "--keep-think",
            "--exclude-eot" if DISTILL["exclude_eot"] else "--keep-eot",
            *[opt("--eot-token", t) for t in DISTILL["eot_tokens"]],
        ],
    )
)


rule compute_lengths:
    input:
        **code("compute_lengths.py"),
        teacher=TEACHER_INPUT,
        dataset=DATASET_INPUT,
    output:
        lengths=f"{DISTILL_DIR}/lengths.parquet",
        skipped=f"{DISTILL_DIR}/skipped.tsv",
    params:
        source=SOURCE_ARGS,
        max_seq_len=DISTILL["max_seq_len"],
    log:
        logs("distill/compute_lengths.log"),
    benchmark:
        benchmarks("distill/compute_lengths.tsv")
    conda:
        env("distill")
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "python {input.script:q} {params.source} --max-seq-len {params.max_seq_len:q} "
        "--output {output.lengths:q} --skipped {output.skipped:q} 2> {log:q}"


rule make_shards:
    input:
        **code("make_shards.py"),
        lengths=rules.compute_lengths.output.lengths,
    output:
        f"{DISTILL_DIR}/shards/plan.parquet",
    params:
        n=DISTILL["n_shards"],
    log:
        logs("distill/make_shards.log"),
    conda:
        env("distill")
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python {input.script:q} --lengths {input.lengths:q} --n-shards {params.n:q} --output {output:q} 2> {log:q}"


rule select_shard:
    input:
        **code("select_shard.py"),
        plan=rules.make_shards.output[0],
    output:
        f"{DISTILL_DIR}/shards/shard-{{shard}}.parquet",
    localrule: True
    log:
        logs(f"distill/select_shard/shard-{{shard}}.log"),
    conda:
        env("distill")
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "python {input.script:q} --plan {input.plan:q} --shard {wildcards.shard} --output {output:q} 2> {log:q}"


rule extract_logits:
    input:
        **code("extract_logits.py"),
        teacher=TEACHER_INPUT,
        dataset=DATASET_INPUT,
        shard=rules.select_shard.output[0],
    output:
        parquet=f"{DISTILL_DIR}/logits/shard-{{shard}}.parquet",
    params:
        source=SOURCE_ARGS,
        compress=(
            f"--top-p {DISTILL['top_p']} --top-p-max-elements {DISTILL['top_p_max_elements']} "
            f"--sampled-n {DISTILL['sampled_n']} --seed {config['seed']}"
        ),
        batching=(
            f"--token-budget {DISTILL['token_budget']} --max-batch-size {DISTILL['max_batch_size']} "
            + opt("--head-chunk-rows", DISTILL["head_chunk_rows"])
        ),
        runtime=(
            "--dtype {d} --device {v} --verify-mask {m} {r}".format(
                d=DISTILL["dtype"],
                v=DISTILL["device"],
                m=DISTILL["verify_mask_rows"],
                r=opt("--max-runtime-minutes", DISTILL["max_runtime_minutes"]),
            )
        ),
        labels=(
            opt("--teacher-label", "demo" if USE_DEMO_TEACHER else DISTILL["teacher"])
            + " "
            + opt("--dataset-label", "demo" if USE_DEMO_DATASET else DISTILL["dataset"])
        ),
    threads: 2
    log:
        logs(f"distill/extract_logits/shard-{{shard}}.log"),
    benchmark:
        benchmarks(f"distill/extract_logits/shard-{{shard}}.tsv")
    conda:
        env("distill")
    resources:
        mem_mb=8000,
        runtime=240,
    shell:
        "python {input.script:q} {params.source} --shard {input.shard:q} --output {output.parquet:q} "
        "{params.compress} {params.batching} {params.runtime} {params.labels} --threads {threads} 2> {log:q}"


ALL_TARGETS.extend(rules.extract_logits.output.parquet.format(shard=s) for s in SHARDS)
