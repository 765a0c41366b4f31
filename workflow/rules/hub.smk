# The Hub chain: publish the compressed-logit shards to a Hugging Face Hub dataset repo.
#
#   hub_create_repo       -> {RESULTS}/hub/receipts/repo.json
#   hub_preupload_shard   -> {RESULTS}/hub/receipts/shards/shard-{shard}.json   (LFS content, per shard)
#   hub_commit_shards     -> {RESULTS}/hub/receipts/commits/commit-{batch}.json (<= shards_per_commit each)
#   hub_render_card       -> {RESULTS}/hub/card/README.md                       (offline)
#   hub_commit_card       -> {RESULTS}/hub/receipts/card.json
#   hub_verify_repo       -> {RESULTS}/hub/verify.json                          (final target)
#
# n shards make at most ceil(n / shards_per_commit) + 1 commits. Only with
# hub.repo_id set does `rule all` ask for these files; the token comes from
# HF_TOKEN or the cached login, never from config. Receipts exist only after the
# Hub confirmed, so a rerun redoes exactly the unconfirmed steps, and each step
# first asks the Hub what it holds, so a rerun sends no bytes it already has.
import hashlib
import math

HUB = config["hub"]
HUB_N_SHARDS = config["distill"]["n_shards"]
# Commit batch "00000" holds shards 0..shards_per_commit-1, and so on.
HUB_BATCH_SHARDS = {
    f"{b:05d}": [
        f"{i:05d}"
        for i in range(
            b * HUB["shards_per_commit"],
            min(HUB_N_SHARDS, (b + 1) * HUB["shards_per_commit"]),
        )
    ]
    for b in range(math.ceil(HUB_N_SHARDS / HUB["shards_per_commit"]))
}
HUB_BATCHES = list(HUB_BATCH_SHARDS)
# Lineage: the settings that determine the shards' content.
HUB_CONFIG_SHA256 = hashlib.sha256(
    as_json({k: config[k] for k in ("seed", "demo", "distill")}).encode()
).hexdigest()


rule hub_create_repo:
    input:
        **code("create_hub_repo.py"),
    output:
        receipt=f"{RESULTS}/hub/receipts/repo.json",
    log:
        logs("hub/create_repo.log"),
    retries: 1  # network rule: a second try after a crash; HTTP retries happen inside
    localrule: HUB["local_jobs"]
    conda:
        env("hub")
    resources:
        mem_mb=512,
        runtime=15,
    params:
        script=SCRIPT["create_hub_repo"],
        hub=as_json(HUB),
    shell:
        "python {params.script:q} --hub {params.hub:q} --receipt {output.receipt:q} 2> {log:q}"


rule hub_preupload_shard:
    input:
        **code("preupload_shard.py"),
        parquet=rules.extract_logits.output.parquet,
        repo=rules.hub_create_repo.output.receipt,
    output:
        receipt=f"{RESULTS}/hub/receipts/shards/shard-{{shard}}.json",
    log:
        logs(f"hub/preupload/shard-{{shard}}.log"),
    benchmark:
        benchmarks(f"hub/preupload/shard-{{shard}}.tsv")
    retries: 1
    localrule: HUB["local_jobs"]
    conda:
        env("hub")
    resources:
        mem_mb=1024,
        runtime=120,
    params:
        script=SCRIPT["preupload_shard"],
        hub=as_json(HUB),
        n_shards=HUB_N_SHARDS,
    shell:
        "python {params.script:q} --hub {params.hub:q} --shard {input.parquet:q}"
        " --n-shards {params.n_shards:q} --repo-receipt {input.repo:q} --receipt {output.receipt:q} 2> {log:q}"


rule hub_commit_shards:
    input:
        **code("commit_shards.py"),
        receipts=lambda wc: expand(
            rules.hub_preupload_shard.output.receipt, shard=HUB_BATCH_SHARDS[wc.batch]
        ),
    output:
        receipt=f"{RESULTS}/hub/receipts/commits/commit-{{batch}}.json",
    log:
        logs(f"hub/commit-{{batch}}.log"),
    wildcard_constraints:
        batch=r"\d{5}",
    retries: 1
    localrule: HUB["local_jobs"]
    conda:
        env("hub")
    resources:
        mem_mb=1024,
        runtime=60,
    params:
        script=SCRIPT["commit_shards"],
        hub=as_json(HUB),
        receipt_args=lambda wc, input: " ".join(
            f"--receipt {q(r)}" for r in input.receipts
        ),
    shell:
        "python {params.script:q} --hub {params.hub:q} {params.receipt_args} --output {output.receipt:q} 2> {log:q}"


rule hub_render_card:
    input:
        **code("render_dataset_card.py"),
        shards=expand(
            rules.extract_logits.output.parquet,
            shard=[f"{i:05d}" for i in range(HUB_N_SHARDS)],
        ),
    output:
        card=f"{RESULTS}/hub/card/README.md",
    log:
        logs("hub/render_card.log"),
    localrule: True
    conda:
        env("hub")
    resources:
        mem_mb=512,
        runtime=10,
    params:
        script=SCRIPT["render_dataset_card"],
        hub=as_json(HUB),
        config_sha256=HUB_CONFIG_SHA256,
    shell:
        "python {params.script:q} {input.shards:q} --hub {params.hub:q}"
        " --config-sha256 {params.config_sha256:q} --output {output.card:q} 2> {log:q}"


rule hub_commit_card:
    input:
        **code("commit_shards.py"),
        card=rules.hub_render_card.output.card,
        commits=expand(rules.hub_commit_shards.output.receipt, batch=HUB_BATCHES),
    output:
        receipt=f"{RESULTS}/hub/receipts/card.json",
    log:
        logs("hub/commit_card.log"),
    retries: 1
    localrule: HUB["local_jobs"]
    conda:
        env("hub")
    resources:
        mem_mb=512,
        runtime=15,
    params:
        script=SCRIPT["commit_shards"],
        hub=as_json(HUB),
        after_args=lambda wc, input: " ".join(f"--after {q(r)}" for r in input.commits),
    shell:
        "python {params.script:q} --hub {params.hub:q} --card {input.card:q} {params.after_args}"
        " --output {output.receipt:q} 2> {log:q}"


rule hub_verify_repo:
    input:
        **code("verify_hub_repo.py"),
        card=rules.hub_commit_card.output.receipt,
        shards=rules.hub_render_card.input.shards,
    output:
        report=f"{RESULTS}/hub/verify.json",
    log:
        logs("hub/verify.log"),
    retries: 1
    localrule: HUB["local_jobs"]
    conda:
        env("hub")
    resources:
        mem_mb=512,
        runtime=30,
    params:
        script=SCRIPT["verify_hub_repo"],
        hub=as_json(HUB),
        n_shards=HUB_N_SHARDS,
    shell:
        "python {params.script:q} {input.shards:q} --hub {params.hub:q} --n-shards {params.n_shards:q}"
        " --output {output.report:q} 2> {log:q}"


if HUB["repo_id"]:
    ALL_TARGETS.append(rules.hub_verify_repo.output.report)
