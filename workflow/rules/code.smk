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
