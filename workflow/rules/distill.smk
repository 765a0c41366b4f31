# The distillation chain: lengths → length-sorted shards → compressed teacher logits per shard.

DISTILL = config["distill"]
DISTILL_DIR = f"{RESULTS}/distill"
SHARDS = [f"{i:05d}" for i in range(DISTILL["n_shards"])]
USE_DEMO_TEACHER = DISTILL["teacher"] == "demo"
USE_DEMO_DATASET = DISTILL["dataset"] == "demo"
USE_GENERATED_DATASET = DISTILL["dataset"] == "generated"
USE_DOCSTRING_DATASET = DISTILL["dataset"] == "docstrings"
GENERATE = DISTILL["generate"]


TEACHER = (
    str(rules.build_demo_teacher.output[0]) if USE_DEMO_TEACHER else DISTILL["teacher"]
)
# Values that can only be paths must exist now: a dry run names the key, where the job
# would only say "Repo id must be in the form 'repo_name' or 'namespace/repo_name'".
if not USE_DEMO_TEACHER and not TEACHER.startswith("pkg:"):
    check_local_path("distill.teacher", TEACHER)
if DISTILL["dataset"] not in ("demo", "generated"):
    check_local_path("distill.dataset", DISTILL["dataset"])
check_local_path("distill.chat_template", DISTILL["chat_template"])
if USE_GENERATED_DATASET:
    check_local_path("distill.generate.prompts", GENERATE["prompts"])
# A chat template file is an input: editing it reruns what tokenizes with it.
TEMPLATE_INPUT = [DISTILL["chat_template"]] if DISTILL["chat_template"] else []
TEACHER_INPUT = [TEACHER] if USE_DEMO_TEACHER else []

if USE_GENERATED_DATASET:
    if not GENERATE["prompts"]:
        raise WorkflowError(
            "invalid config key 'distill.generate.prompts': distill.dataset is 'generated', "
            "so a prompts file (one prompt per line) is needed"
        )

    rule generate_answers:
        """The teacher's own sampled answers to a fixed list of prompts: the dataset of the distillation chain."""
        input:
            **code("generate_answers.py"),
            teacher=TEACHER_INPUT,
            template=TEMPLATE_INPUT,
            prompts=GENERATE["prompts"],
        output:
            f"{DISTILL_DIR}/answers/conversations.parquet",
        log:
            logs("distill/generate_answers.log"),
        benchmark:
            benchmarks("distill/generate_answers.tsv")
        conda:
            env("distill")
        threads: 2
        resources:
            mem_mb=8000,
            runtime=60,
        params:
            script=SCRIPT["generate_answers"],
            teacher=" ".join(
                filter(
                    None,
                    [
                        opt("--teacher", TEACHER),
                        opt("--revision", DISTILL["teacher_revision"]),
                        opt("--chat-template", DISTILL["chat_template"]),
                    ],
                )
            ),
            sampling=(
                f"--max-new-tokens {GENERATE['max_new_tokens']} --temperature {GENERATE['temperature']} "
                f"--top-p {GENERATE['top_p']} --batch-size {GENERATE['batch_size']} --seed {config['seed']}"
            ),
            runtime=" ".join(
                [opt("--dtype", DISTILL["dtype"]), opt("--device", DISTILL["device"])]
            ),
        shell:
            "python {params.script:q} {params.teacher} --prompts {input.prompts:q} {params.sampling} "
            "{params.runtime} --threads {threads} --output {output:q} 2> {log:q}"


if USE_DOCSTRING_DATASET:

    rule make_docstring_conversations:
        """Questions about installed packages' objects answered by their docstrings: the dataset of the distillation chain."""
        input:
            **code("make_docstring_conversations.py"),
        output:
            f"{DISTILL_DIR}/docstrings/conversations.parquet",
        log:
            logs("distill/make_docstring_conversations.log"),
        localrule: True
        conda:
            env("distill")
        resources:
            mem_mb=4000,
            runtime=10,
        params:
            script=SCRIPT["make_docstring_conversations"],
            options=(
                f"--packages {q(','.join(DISTILL['docstrings']['packages']))} "
                f"--n {DISTILL['docstrings']['n']} --max-chars {DISTILL['docstrings']['max_chars']} "
                f"--min-chars {DISTILL['docstrings']['min_chars']} --seed {config['seed']}"
            ),
        shell:
            "python {params.script:q} {params.options} --output {output:q} 2> {log:q}"


if USE_DEMO_DATASET:
    DATASET = str(rules.make_demo_dataset.output[0])
elif USE_GENERATED_DATASET:
    DATASET = str(rules.generate_answers.output[0])
elif USE_DOCSTRING_DATASET:
    DATASET = str(rules.make_docstring_conversations.output[0])
else:
    DATASET = DISTILL["dataset"]
# The demo teacher and the demo or generated dataset are DAG nodes; a real teacher or
# dataset is a Hub id or a path (no rule). Plain lists, not input functions: evaluated
# once, not once per job.
DATASET_INPUT = (
    [DATASET]
    if USE_DEMO_DATASET or USE_GENERATED_DATASET or USE_DOCSTRING_DATASET
    else []
)
if USE_DEMO_DATASET:
    DATASET_LABEL = "demo"
elif USE_DOCSTRING_DATASET:
    DATASET_LABEL = "docstrings"
elif USE_GENERATED_DATASET:
    DATASET_LABEL = f"generated:{GENERATE['prompts']}"
else:
    DATASET_LABEL = DISTILL["dataset"]


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
        template=TEMPLATE_INPUT,
        dataset=DATASET_INPUT,
    output:
        lengths=f"{DISTILL_DIR}/lengths.parquet",
        skipped=f"{DISTILL_DIR}/skipped.tsv",
    log:
        logs("distill/compute_lengths.log"),
    benchmark:
        benchmarks("distill/compute_lengths.tsv")
    conda:
        env("distill")
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        script=SCRIPT["compute_lengths"],
        source=SOURCE_ARGS,
        max_seq_len=DISTILL["max_seq_len"],
    shell:
        "python {params.script:q} {params.source} --max-seq-len {params.max_seq_len:q} "
        "--output {output.lengths:q} --skipped {output.skipped:q} 2> {log:q}"


rule make_shards:
    input:
        **code("make_shards.py"),
        lengths=rules.compute_lengths.output.lengths,
    output:
        f"{DISTILL_DIR}/shards/plan.parquet",
    log:
        logs("distill/make_shards.log"),
    conda:
        env("distill")
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        script=SCRIPT["make_shards"],
        n=DISTILL["n_shards"],
    shell:
        "python {params.script:q} --lengths {input.lengths:q} --n-shards {params.n:q} --output {output:q} 2> {log:q}"


rule select_shard:
    input:
        **code("select_shard.py"),
        plan=rules.make_shards.output[0],
    output:
        f"{DISTILL_DIR}/shards/shard-{{shard}}.parquet",
    log:
        logs(f"distill/select_shard/shard-{{shard}}.log"),
    localrule: True
    conda:
        env("distill")
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        script=SCRIPT["select_shard"],
    shell:
        "python {params.script:q} --plan {input.plan:q} --shard {wildcards.shard} --output {output:q} 2> {log:q}"


rule extract_logits:
    input:
        **code("extract_logits.py"),
        teacher=TEACHER_INPUT,
        template=TEMPLATE_INPUT,
        dataset=DATASET_INPUT,
        shard=rules.select_shard.output[0],
    output:
        parquet=f"{DISTILL_DIR}/logits/shard-{{shard}}.parquet",
    log:
        logs(f"distill/extract_logits/shard-{{shard}}.log"),
    benchmark:
        benchmarks(f"distill/extract_logits/shard-{{shard}}.tsv")
    conda:
        env("distill")
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        # The SLURM profile turns this into --gpus=N (it leaves this rule's count to config).
        gpu=DISTILL["gpus_per_job"],
    params:
        script=SCRIPT["extract_logits"],
        source=SOURCE_ARGS,
        compress=compress_args(DISTILL),
        batching=(
            f"--token-budget {DISTILL['token_budget']} --max-batch-size {DISTILL['max_batch_size']} "
            + opt("--head-chunk-rows", DISTILL["head_chunk_rows"])
        ),
        runtime=(
            "--dtype {d} --device {v} --gpus {g} --verify-mask {m} {r}".format(
                d=DISTILL["dtype"],
                v=DISTILL["device"],
                g=DISTILL["gpus_per_job"],
                m=DISTILL["verify_mask_rows"],
                r=opt("--max-runtime-minutes", DISTILL["max_runtime_minutes"]),
            )
        ),
        labels=" ".join(
            [
                opt(
                    "--teacher-label",
                    "demo" if USE_DEMO_TEACHER else DISTILL["teacher"],
                ),
                opt("--dataset-label", DATASET_LABEL),
            ]
        ),
    shell:
        "python {params.script:q} {params.source} --shard {input.shard:q} --output {output.parquet:q} "
        "{params.compress} {params.batching} {params.runtime} {params.labels} --threads {threads} 2> {log:q}"


ALL_TARGETS.extend(rules.extract_logits.output.parquet.format(shard=s) for s in SHARDS)
# Every shard's path, one per line: the one input of the rules that read all shards.
LOGITS_LIST = shard_list("logits", rules.extract_logits.output.parquet)


rule summarize_logits:
    """The distillation chain over all shards: tokens, tokens/s, bytes/token, nucleus sizes, stored mass."""
    input:
        **code("summarize_logits.py"),
        logits=LOGITS_LIST,
        benchmarks=shard_list("extract_benchmarks", rules.extract_logits.benchmark),
    # The summary JSON and the per-shard plot carry wall times (tokens/s from the benchmark
    # files), so they live under the benchmarks root with the other timings: everything
    # else under results/ depends on its inputs alone (a rerun, or SLURM, gives the same bytes).
    output:
        json=report(
            benchmarks("distill/summary.json"),
            caption="../report/distill_summary.rst",
            category="Compressed logits",
        ),
        nucleus=report(
            f"{DISTILL_DIR}/summary_nucleus.png",
            caption="../report/distill_nucleus.rst",
            category="Compressed logits",
        ),
        mass=report(
            f"{DISTILL_DIR}/summary_mass.png",
            caption="../report/distill_mass.rst",
            category="Compressed logits",
        ),
        shards=report(
            benchmarks("distill/summary_shards.png"),
            caption="../report/distill_shards.rst",
            category="Compressed logits",
        ),
    log:
        logs("distill/summarize_logits.log"),
    benchmark:
        benchmarks("distill/summarize_logits.tsv")
    conda:
        env("distill")
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        script=SCRIPT["summarize_logits"],
    shell:
        "python {params.script:q} --logits @{input.logits:q} --benchmark @{input.benchmarks:q} --json {output.json:q} "
        "--nucleus-plot {output.nucleus:q} --mass-plot {output.mass:q} --shards-plot {output.shards:q} "
        "2> {log:q}"


ALL_TARGETS.extend(rules.summarize_logits.output)
