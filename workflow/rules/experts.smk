# The experts chain: long-tail experts -> recomputed expert npz -> gating -> learning to reject.
# Artifacts (all under {RESULTS}/experts/, each rebuildable alone by naming it):
#   data/{train,tunev,val,test}.npz, data/classes.json       make_longtail_data
#   checkpoints/{expert}.safetensors                         train_expert (GPU on SLURM)
#   logits/{expert}/{tunev,val,test}_logits.npz              recompute_expert_logits
#                                                            (or import_legacy_logits)
#   gating/gating.safetensors, gating/summary.json,
#   gating/{tunev,val,test}_mixture.npz                      train_gating
#   eval/{predictor}.json  (an expert name or "mixture")     evaluate_rejection
#   eval/metrics.json, eval/summary.tsv, eval/risk_coverage.png  summarize_rejection
from pathlib import Path

from snakemake.exceptions import WorkflowError

EXPERTS_CFG = config["experts"]
EXPERT_NAMES = list(EXPERTS_CFG["experts"])
EXPERTS_DIR = f"{RESULTS}/experts"
EXPERT_SPLITS = ("tunev", "val", "test")
LT_DATA_SPLITS = ("train",) + EXPERT_SPLITS
PREDICTORS = EXPERT_NAMES + ["mixture"]
LOGITS_FROM_IMPORT = EXPERTS_CFG["logits"]["source"] == "import"
LEGACY_PT = {
    "tunev": "tuneV_logits.pt",
    "val": "val_lt_logits.pt",
    "test": "test_lt_logits.pt",
}


wildcard_constraints:
    expert="|".join(EXPERT_NAMES),
    predictor="|".join(PREDICTORS),


# The user's feature files are inputs, so that replacing them reruns the chain.
FEATURES_INPUTS = (
    [f"{EXPERTS_CFG['data']['features_dir']}/{split}.npz" for split in LT_DATA_SPLITS]
    if EXPERTS_CFG["data"]["source"] == "features"
    else []
)
if (
    EXPERTS_CFG["data"]["source"] == "features"
    and not EXPERTS_CFG["data"]["features_dir"]
):
    raise WorkflowError(
        "config key 'experts.data.features_dir' must name a folder when experts.data.source is 'features'"
    )
# What each predictor is evaluated on: an expert's npz or the gated mixture's.
PREDICTOR_NPZ = {
    name: {
        split: (
            f"{EXPERTS_DIR}/gating/{split}_mixture.npz"
            if name == "mixture"
            else f"{EXPERTS_DIR}/logits/{name}/{split}_logits.npz"
        )
        for split in EXPERT_SPLITS
    }
    for name in PREDICTORS
}


rule make_longtail_data:
    input:
        **code("make_longtail_data.py"),
        features=FEATURES_INPUTS,
    output:
        splits=expand(f"{EXPERTS_DIR}/data/{{split}}.npz", split=LT_DATA_SPLITS),
        classes=f"{EXPERTS_DIR}/data/classes.json",
    log:
        logs("experts/make_longtail_data.log"),
    conda:
        env("experts")
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        script=SCRIPT["make_longtail_data"],
        cfg=as_json(EXPERTS_CFG["data"]),
        seed=config["seed"],
        labels_only="--labels-only" if LOGITS_FROM_IMPORT else "",
        out_dir=lambda wildcards, output: str(Path(output.classes).parent),
    shell:
        "python {params.script:q} --config {params.cfg:q} --seed {params.seed:q} {params.labels_only}"
        " --output {params.out_dir:q} 2> {log:q}"


rule train_expert:
    input:
        **code("train_expert.py"),
        data=rules.make_longtail_data.output.splits,
        classes=rules.make_longtail_data.output.classes,
    output:
        f"{EXPERTS_DIR}/checkpoints/{{expert}}.safetensors",
    log:
        logs(f"experts/train_expert/{{expert}}.log"),
    benchmark:
        benchmarks(f"experts/train_expert/{{expert}}.tsv")
    conda:
        env("experts")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        script=SCRIPT["train_expert"],
        model=as_json(EXPERTS_CFG["model"]),
        train=as_json(EXPERTS_CFG["training"]),
        seed=config["seed"],
        data_dir=lambda wildcards, input: str(Path(input.classes).parent),
    shell:
        "python {params.script:q} --expert {wildcards.expert} --data-dir {params.data_dir:q}"
        " --model-config {params.model:q} --train-config {params.train:q} --seed {params.seed:q}"
        " --threads {threads} --output {output:q} 2> {log:q}"


if LOGITS_FROM_IMPORT:

    if not EXPERTS_CFG["logits"]["import_dir"]:
        raise WorkflowError(
            "config key 'experts.logits.import_dir' must name a folder when experts.logits.source is 'import'"
        )
    # Per expert, the files import_legacy_logits.py will read: npz where present, else the
    # legacy .pt (a missing one is reported under its npz name).
    IMPORT_FOLDERS = {
        name: Path(EXPERTS_CFG["logits"]["import_dir"])
        / EXPERTS_CFG["logits"]["import_subdirs"].get(name, name)
        for name in EXPERT_NAMES
    }
    IMPORT_INPUTS = {
        name: [
            str(
                folder / LEGACY_PT[split]
                if not (folder / f"{split}_logits.npz").exists()
                and (folder / LEGACY_PT[split]).exists()
                else folder / f"{split}_logits.npz"
            )
            for split in EXPERT_SPLITS
        ]
        for name, folder in IMPORT_FOLDERS.items()
    }

    rule import_legacy_logits:
        input:
            **code("import_legacy_logits.py"),
            source=lambda wildcards: IMPORT_INPUTS[wildcards.expert],
            data=rules.make_longtail_data.output.splits,
            classes=rules.make_longtail_data.output.classes,
        output:
            expand(
                f"{EXPERTS_DIR}/logits/{{{{expert}}}}/{{split}}_logits.npz",
                split=EXPERT_SPLITS,
            ),
        log:
            logs(f"experts/import_legacy_logits/{{expert}}.log"),
        conda:
            env("experts")
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            script=SCRIPT["import_legacy_logits"],
            source_dir=lambda wildcards: str(IMPORT_FOLDERS[wildcards.expert]),
            data_dir=lambda wildcards, input: str(Path(input.classes).parent),
            out_dir=lambda wildcards, output: str(Path(output[0]).parent),
        shell:
            "python {params.script:q} --source-dir {params.source_dir:q} --data-dir {params.data_dir:q}"
            " --output {params.out_dir:q} 2> {log:q}"

else:

    rule recompute_expert_logits:
        input:
            **code("recompute_expert_logits.py"),
            checkpoint=rules.train_expert.output,
            data=rules.make_longtail_data.output.splits,
            classes=rules.make_longtail_data.output.classes,
        output:
            expand(
                f"{EXPERTS_DIR}/logits/{{{{expert}}}}/{{split}}_logits.npz",
                split=EXPERT_SPLITS,
            ),
        log:
            logs(f"experts/recompute_expert_logits/{{expert}}.log"),
        conda:
            env("experts")
        threads: 1
        resources:
            mem_mb=2000,
            runtime=20,
        params:
            script=SCRIPT["recompute_expert_logits"],
            data_dir=lambda wildcards, input: str(Path(input.classes).parent),
            # Not the training device: this rule is not routed to a GPU partition, so it
            # takes a GPU only where one is present.
            device="auto",
            out_dir=lambda wildcards, output: str(Path(output[0]).parent),
        shell:
            "python {params.script:q} --checkpoint {input.checkpoint:q} --data-dir {params.data_dir:q}"
            " --device {params.device:q} --threads {threads} --output {params.out_dir:q} 2> {log:q}"


rule train_gating:
    input:
        **code("train_gating.py"),
        logits=expand(
            f"{EXPERTS_DIR}/logits/{{expert}}/{{split}}_logits.npz",
            expert=EXPERT_NAMES,
            split=EXPERT_SPLITS,
        ),
        data=rules.make_longtail_data.output.splits,
        classes=rules.make_longtail_data.output.classes,
    output:
        model=f"{EXPERTS_DIR}/gating/gating.safetensors",
        summary=f"{EXPERTS_DIR}/gating/summary.json",
        mixture=expand(
            f"{EXPERTS_DIR}/gating/{{split}}_mixture.npz", split=EXPERT_SPLITS
        ),
    log:
        logs("experts/train_gating.log"),
    benchmark:
        benchmarks("experts/train_gating.tsv")
    conda:
        env("experts")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        script=SCRIPT["train_gating"],
        experts=",".join(EXPERT_NAMES),
        cfg=as_json(EXPERTS_CFG["gating"]),
        seed=config["seed"],
        logits_dir=lambda wildcards, input: str(Path(input.logits[0]).parent.parent),
        data_dir=lambda wildcards, input: str(Path(input.classes).parent),
        out_dir=lambda wildcards, output: str(Path(output.model).parent),
    shell:
        "python {params.script:q} --logits-dir {params.logits_dir:q} --experts {params.experts:q}"
        " --data-dir {params.data_dir:q} --config {params.cfg:q} --seed {params.seed:q}"
        " --threads {threads} --output {params.out_dir:q} 2> {log:q}"


rule evaluate_rejection:
    input:
        **code("evaluate_rejection.py"),
        val=lambda wildcards: PREDICTOR_NPZ[wildcards.predictor]["val"],
        test=lambda wildcards: PREDICTOR_NPZ[wildcards.predictor]["test"],
        classes=rules.make_longtail_data.output.classes,
    output:
        f"{EXPERTS_DIR}/eval/{{predictor}}.json",
    log:
        logs(f"experts/evaluate_rejection/{{predictor}}.log"),
    benchmark:
        benchmarks(f"experts/evaluate_rejection/{{predictor}}.tsv")
    conda:
        env("experts")
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        script=SCRIPT["evaluate_rejection"],
        cfg=as_json(EXPERTS_CFG["rejection"]),
        seed=config["seed"],
    shell:
        "python {params.script:q} --name {wildcards.predictor} --val {input.val:q} --test {input.test:q}"
        " --classes {input.classes:q} --config {params.cfg:q} --seed {params.seed:q} --output {output:q} 2> {log:q}"


rule summarize_rejection:
    input:
        **code("summarize_rejection.py"),
        results=expand(f"{EXPERTS_DIR}/eval/{{predictor}}.json", predictor=PREDICTORS),
    output:
        metrics=f"{EXPERTS_DIR}/eval/metrics.json",
        table=f"{EXPERTS_DIR}/eval/summary.tsv",
        plot=report(
            f"{EXPERTS_DIR}/eval/risk_coverage.png",
            caption="../report/experts_risk_coverage.rst",
            category="Long-tail experts",
            labels={"figure": "risk-coverage"},
        ),
    log:
        logs("experts/summarize_rejection.log"),
    conda:
        env("experts")
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        script=SCRIPT["summarize_rejection"],
    shell:
        "python {params.script:q} {input.results:q} --output-json {output.metrics:q} --output-tsv {output.table:q}"
        " --output-png {output.plot:q} 2> {log:q}"


if EXPERTS_CFG["enabled"]:
    ALL_TARGETS.extend(rules.summarize_rejection.output)
    ALL_TARGETS.append(rules.train_gating.output.model)
    ALL_TARGETS.extend(
        expand(
            f"{EXPERTS_DIR}/logits/{{expert}}/{{split}}_logits.npz",
            expert=EXPERT_NAMES,
            split=EXPERT_SPLITS,
        )
    )
    ALL_TARGETS.extend(rules.train_gating.output.mixture)
