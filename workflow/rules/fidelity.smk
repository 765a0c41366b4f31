# The fidelity chain: dense logit dumps and the fidelity report of the distillation
# chain's compressed logits.
# Formats and metrics: docs/FIDELITY.md.
#
#   {RESULTS}/fidelity/dense/shard-XXXXX.json.gz          dense dump summary (points at the next two)
#   {RESULTS}/fidelity/dense/shard-XXXXX.safetensors      one float logits tensor [vocab] per sampled token
#   {RESULTS}/fidelity/dense/shard-XXXXX.metadata.json    one object per tensor key
#   {RESULTS}/fidelity/shards/shard-XXXXX.json            per-token fidelity metrics of one shard
#   {RESULTS}/fidelity/fidelity_report.json, fidelity_report.png   all shards (in --report)

FIDELITY = config["fidelity"]
FIDELITY_DIR = f"{RESULTS}/fidelity"
FIDELITY_SEED = config["seed"] if FIDELITY["seed"] is None else FIDELITY["seed"]


rule dump_dense_logits:
    """Teacher's dense logits for a seeded sample of one shard's kept tokens (GPU rule)."""
    input:
        **code("dump_dense_logits.py"),
        teacher=TEACHER_INPUT,
        dataset=DATASET_INPUT,
        shard=rules.extract_logits.input.shard,
    output:
        summary=f"{FIDELITY_DIR}/dense/shard-{{shard}}.json.gz",
        tensors=f"{FIDELITY_DIR}/dense/shard-{{shard}}.safetensors",
        metadata=f"{FIDELITY_DIR}/dense/shard-{{shard}}.metadata.json",
    log:
        logs(f"fidelity/dump_dense_logits/shard-{{shard}}.log"),
    benchmark:
        benchmarks(f"fidelity/dump_dense_logits/shard-{{shard}}.tsv")
    conda:
        env("fidelity")
    threads: 2
    resources:
        mem_mb=FIDELITY["dump_mem_mb"],
        runtime=FIDELITY["dump_runtime"],
    params:
        script=SCRIPT["dump_dense_logits"],
        source=SOURCE_ARGS,
        sample=(
            f"--tokens {FIDELITY['tokens_per_shard']} --seed {FIDELITY_SEED} "
            f"--store-dtype {FIDELITY['dense_dtype']}"
        ),
        runtime=(
            f"--token-budget {DISTILL['token_budget']} --max-batch-size {DISTILL['max_batch_size']} "
            f"--dtype {DISTILL['dtype']} --device {DISTILL['device']}"
        ),
    shell:
        "python {params.script:q} {params.source} --shard {input.shard:q} --output {output.summary:q} "
        "--stream {wildcards.shard} {params.sample} {params.runtime} --threads {threads} 2> {log:q}"


rule fidelity_shard:
    """Compressed records of one shard measured against its dense dump."""
    input:
        **code("fidelity_report.py"),
        dense=rules.dump_dense_logits.output.summary,
        tensors=rules.dump_dense_logits.output.tensors,
        metadata=rules.dump_dense_logits.output.metadata,
        logits=rules.extract_logits.output.parquet,
    output:
        f"{FIDELITY_DIR}/shards/shard-{{shard}}.json",
    log:
        logs(f"fidelity/fidelity_shard/shard-{{shard}}.log"),
    benchmark:
        benchmarks(f"fidelity/fidelity_shard/shard-{{shard}}.tsv")
    conda:
        env("fidelity")
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        script=SCRIPT["fidelity_report"],
        temperature=FIDELITY["temperature"],
    shell:
        "python {params.script:q} shard --dense {input.dense:q} --logits {input.logits:q} --name shard-{wildcards.shard} "
        "--temperature {params.temperature:q} --output {output:q} 2> {log:q}"


rule fidelity_report:
    """All shards: the headline table (JSON) and the plot."""
    input:
        **code("fidelity_report.py"),
        shards=shard_list("fidelity_shards", rules.fidelity_shard.output[0]),
    output:
        json=report(
            f"{FIDELITY_DIR}/fidelity_report.json",
            caption="../report/fidelity_summary.rst",
            category="Fidelity of compressed logits",
        ),
        plot=report(
            f"{FIDELITY_DIR}/fidelity_report.png",
            caption="../report/fidelity_plot.rst",
            category="Fidelity of compressed logits",
        ),
    log:
        logs("fidelity/fidelity_report.log"),
    conda:
        env("fidelity")
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        script=SCRIPT["fidelity_report"],
    shell:
        "python {params.script:q} aggregate --input @{input.shards:q} --json {output.json:q} --plot {output.plot:q} "
        "2> {log:q}"


if FIDELITY["enabled"]:
    ALL_TARGETS.extend(
        [rules.fidelity_report.output.json, rules.fidelity_report.output.plot]
    )
