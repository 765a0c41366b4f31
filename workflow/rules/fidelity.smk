# Chain E: dense logit dumps and the fidelity report of chain A's compressed logits
# (SPEC 2.E and 2.A.5; seed 001). Formats and metrics: docs/FIDELITY.md.
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
        script=script("dump_dense_logits.py"),
        deps=imports("dump_dense_logits.py"),
        teacher=demo_teacher_input,
        dataset=demo_dataset_input,
        shard=rules.extract_logits.input.shard,
    output:
        summary=f"{FIDELITY_DIR}/dense/shard-{{shard}}.json.gz",
        tensors=f"{FIDELITY_DIR}/dense/shard-{{shard}}.safetensors",
        metadata=f"{FIDELITY_DIR}/dense/shard-{{shard}}.metadata.json",
    params:
        source=SOURCE_ARGS,
        sample=lambda wildcards: (
            f"--tokens {FIDELITY['tokens_per_shard']} --seed {FIDELITY_SEED} "
            f"--stream {int(wildcards.shard)} --store-dtype {FIDELITY['dense_dtype']}"
        ),
        runtime=(
            f"--token-budget {DISTILL['token_budget']} --max-batch-size {DISTILL['max_batch_size']} "
            f"--dtype {DISTILL['dtype']} --device {DISTILL['device']}"
        ),
    threads: 2
    log:
        f"{RESULTS}/logs/fidelity/dump_dense_logits/shard-{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fidelity/dump_dense_logits/shard-{{shard}}.tsv"
    conda:
        env("fidelity")
    resources:
        mem_mb=FIDELITY["dump_mem_mb"],
        runtime=FIDELITY["dump_runtime"],
    shell:
        "python {input.script} {params.source} --shard {input.shard} --output {output.summary} "
        "{params.sample} {params.runtime} --threads {threads} 2> {log}"


rule fidelity_shard:
    """Compressed records of one shard measured against its dense dump."""
    input:
        script=script("fidelity_report.py"),
        deps=imports("fidelity_report.py"),
        dense=rules.dump_dense_logits.output.summary,
        tensors=rules.dump_dense_logits.output.tensors,
        metadata=rules.dump_dense_logits.output.metadata,
        logits=rules.extract_logits.output.parquet,
    output:
        f"{FIDELITY_DIR}/shards/shard-{{shard}}.json",
    params:
        temperature=FIDELITY["temperature"],
    log:
        f"{RESULTS}/logs/fidelity/fidelity_shard/shard-{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fidelity/fidelity_shard/shard-{{shard}}.tsv"
    conda:
        env("fidelity")
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "python {input.script} shard --dense {input.dense} --logits {input.logits} --name shard-{wildcards.shard} "
        "--temperature {params.temperature} --output {output} 2> {log}"


rule fidelity_report:
    """All shards: the headline table (JSON) and the plot."""
    input:
        script=script("fidelity_report.py"),
        deps=imports("fidelity_report.py"),
        shards=expand(rules.fidelity_shard.output[0], shard=SHARDS),
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
    params:
        inputs=lambda wildcards, input: " ".join(f"--input {p}" for p in input.shards),
    log:
        f"{RESULTS}/logs/fidelity/fidelity_report.log",
    conda:
        env("fidelity")
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python {input.script} aggregate {params.inputs} --json {output.json} --plot {output.plot} 2> {log}"


if FIDELITY["enabled"]:
    ALL_TARGETS.extend([rules.fidelity_report.output.json, rules.fidelity_report.output.plot])
