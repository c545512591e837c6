# The README's two commands: `make demo` (the main job) and `make test`.
# Both set everything up on a fresh machine first (a venv in .venv).
VENV ?= .venv
PY := $(VENV)/bin/python
# nbgrader runs `alembic` from PATH: every target that may call it puts the venv first.
export PATH := $(abspath $(VENV))/bin:$(PATH)
export MPLBACKEND ?= Agg

.PHONY: setup demo labkit-demo release pretrained test bench clean

setup: $(VENV)/.installed

# torch is pinned here (CI's exact build); pyproject.toml keeps ranges for students.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e ".[course]"
	touch $@

# The main job: release every lab, grade a perfect, an untouched, a mistaken and a hostile
# submission per lab in a temporary course directory, write feedback, print the grade table.
demo: setup
	$(PY) -m autograder demo

# A quick check that labkit trains on this machine (dSprites encoders, figure in demo_output/).
labkit-demo: setup
	$(PY) -m labkit.demo --out demo_output

# Regenerate labs/release/ from labs/source/ after editing a source notebook.
release: setup
	$(PY) -m autograder release --all

# Retrain the shipped dSprites encoders (labkit/weights/) from their recipes; about 40 min on a
# 2-core CPU, minutes on a GPU. `python -m labkit.pretrained train simclr` retrains one.
pretrained: setup
	$(PY) -m labkit.pretrained train all
	$(PY) -m labkit.pretrained table --write README.md

# Unit and grading tests, then every source notebook executed by nbval at the `ci` scale, offline;
# then the examples in labkit's docstrings (doctest, labkit only: importing it does no work).
test: setup
	LABKIT_SCALE=ci LABKIT_SITE=offline $(PY) -m pytest tests labs/source --nbval-lax --durations=25
	LABKIT_SCALE=ci LABKIT_SITE=offline $(PY) -m pytest --doctest-modules labkit

bench: setup
	$(PY) benchmarks/bench_contrastive_loss.py
	$(PY) benchmarks/bench_ssl_epoch.py
	$(PY) benchmarks/bench_autograde.py --num 10 --jobs 2
	$(PY) benchmarks/bench_stl10_simclr.py
	$(PY) benchmarks/bench_byol.py

clean:
	rm -rf demo_output .pytest_cache
