# Embedded default inputs: generated conversations and a teacher trained on them.
# Real runs name a Hub model / dataset (or local paths) in config and skip these.

DEMO = config["demo"]
DEMO_DIR = f"{RESULTS}/demo"


rule make_demo_dataset:
    input:
        script=script("make_demo_dataset.py"),
        deps=imports("make_demo_dataset.py"),
    output:
        f"{DEMO_DIR}/conversations.parquet",
    params:
        n=DEMO["n_conversations"],
        seed=config["seed"],
        think=DEMO["think_fraction"],
    log:
        f"{RESULTS}/logs/demo/make_demo_dataset.log",
    conda:
        env("distill")
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python {input.script} --n {params.n} --seed {params.seed} "
        "--think-fraction {params.think} --output {output} 2> {log}"


rule build_demo_teacher:
    input:
        script=script("build_demo_teacher.py"),
        deps=imports("build_demo_teacher.py"),
        dataset=rules.make_demo_dataset.output[0],
    output:
        directory(f"{DEMO_DIR}/teacher"),
    params:
        vocab=DEMO["vocab_size"],
        hidden=DEMO["hidden_size"],
        layers=DEMO["num_layers"],
        heads=DEMO["num_heads"],
        steps=DEMO["train_steps"],
        batch=DEMO["train_batch_size"],
        lr=DEMO["learning_rate"],
        max_len=config["distill"]["max_seq_len"],
        seed=config["seed"],
    threads: 2
    log:
        f"{RESULTS}/logs/demo/build_demo_teacher.log",
    benchmark:
        f"{RESULTS}/benchmarks/demo/build_demo_teacher.tsv"
    conda:
        env("distill")
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "python {input.script} --dataset {input.dataset} --output-dir {output} "
        "--vocab-size {params.vocab} --hidden-size {params.hidden} --num-layers {params.layers} "
        "--num-heads {params.heads} --steps {params.steps} --batch-size {params.batch} --lr {params.lr} "
        "--max-len {params.max_len} --seed {params.seed} --threads {threads} 2> {log}"
