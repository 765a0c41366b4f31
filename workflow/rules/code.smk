# The code inputs of every rule (common.smk's code()): one fingerprint file per click
# script, {results}/code/<script>.sha256, listing the sha256 of the script and of every
# module of ours it imports. A rule's jobs name that one file instead of ~15 modules.


rule code_fingerprint:
    """sha256 of a click script and of every module of ours that it imports."""
    input:
        modules=lambda wildcards: imports(f"{wildcards.script}.py"),
    output:
        f"{RESULTS}/code/{{script}}.sha256",
    log:
        logs("code/{script}.log"),
    localrule: True
    conda:
        env("distill")
    resources:
        mem_mb=200,
        runtime=1,
    params:
        root=q(SCRIPTS_DIR),
    shell:
        '(cd {params.root} && for f in {input.modules:q}; do sha256sum -- "$(realpath --relative-to=. "$f")"; done)'
        " > {output:q}.tmp 2> {log:q} && mv -- {output:q}.tmp {output:q}"


rule list_paths:
    """The paths of one per-shard output for every shard, one per line."""
    input:
        **code("list_paths.py"),
        files=lambda wildcards: expand(SHARD_LISTS[wildcards.name], shard=SHARDS),
    output:
        f"{RESULTS}/lists/{{name}}.list",
    log:
        logs("lists/{name}.log"),
    localrule: True
    conda:
        env("distill")
    resources:
        mem_mb=500,
        runtime=5,
    params:
        script=SCRIPT["list_paths"],
        template=lambda wildcards: q(SHARD_LISTS[wildcards.name]),
        n_shards=lambda wildcards: len(SHARDS),
    shell:
        "python {params.script:q} --template {params.template} --count {params.n_shards} --output {output:q} 2> {log:q}"
