# Embedded default inputs: generated conversations and a teacher trained on them.
# Real runs name a Hub model / dataset (or local paths) in config and skip these.

DEMO = config["demo"]
DEMO_DIR = f"{RESULTS}/demo"


rule make_demo_dataset:
    input:
        **code("make_demo_dataset.py"),
    output:
        f"{DEMO_DIR}/conversations.parquet",
    log:
        logs("demo/make_demo_dataset.log"),
    conda:
        env("distill")
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        script=SCRIPT["make_demo_dataset"],
        n=DEMO["n_conversations"],
        seed=config["seed"],
        think=DEMO["think_fraction"],
    shell:
        "python {params.script:q} --n {params.n:q} --seed {params.seed:q} "
        "--think-fraction {params.think:q} --output {output:q} 2> {log:q}"


rule build_demo_teacher:
    input:
        **code("build_demo_teacher.py"),
        dataset=rules.make_demo_dataset.output[0],
    output:
        directory(f"{DEMO_DIR}/teacher"),
    log:
        logs("demo/build_demo_teacher.log"),
    benchmark:
        benchmarks("demo/build_demo_teacher.tsv")
    conda:
        env("distill")
    threads: 2
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        script=SCRIPT["build_demo_teacher"],
        vocab=DEMO["vocab_size"],
        hidden=DEMO["hidden_size"],
        layers=DEMO["num_layers"],
        heads=DEMO["num_heads"],
        steps=DEMO["train_steps"],
        batch=DEMO["train_batch_size"],
        lr=DEMO["learning_rate"],
        max_len=config["distill"]["max_seq_len"],
        seed=config["seed"],
    shell:
        "python {params.script:q} --dataset {input.dataset:q} --output {output:q} "
        "--vocab-size {params.vocab:q} --hidden-size {params.hidden:q} --num-layers {params.layers:q} "
        "--num-heads {params.heads:q} --steps {params.steps:q} --batch-size {params.batch:q} --lr {params.lr:q} "
        "--max-len {params.max_len:q} --seed {params.seed:q} --threads {threads} 2> {log:q}"
