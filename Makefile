# `make demo` and `make test` set everything up on a fresh machine.
SHELL := bash
.SHELLFLAGS := -eo pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch and torchvision are pinned as one pair that imports together (PyPI's torchvision cannot import beside the
# CPU-only torch 2.13.0 wheel); a CUDA build, which runs on a CPU too. The same pair in the Dockerfile and clusters/.
TORCH ?= torch==2.14.1 torchvision==0.29.1
QUIET_PIP := sed '/^WARNING: Location/d'  # this workplace's pip config names absent local indexes

# A fresh machine has no package lists yet: update once, then install (as root, else through sudo).
APT = sh -c 'if [ "$$(id -u)" = 0 ]; then S=; else S=sudo; fi; $$S apt-get update -q && $$S apt-get install -y -q "$$@"' apt

.PHONY: install demo lint test bench bench-gpu image cluster-demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --no-compile $(TORCH) 2>&1 | $(QUIET_PIP)
	$(PY) -m pip install -q --no-compile -e '.[dev]' $(TORCH) 2>&1 | $(QUIET_PIP)  # the pins again: no dependency may move them
	# pip byte-compiles one file at a time; compileall uses every core (2.3 GB of libraries: 74 s on one core of
	# the team's VM, 36 s on two). Failures pass, as pip lets them: some packages ship files for other Pythons.
	$(PY) -m compileall -qq -j 0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || true
	$(PY) -c 'import deepmimic, ray, mlflow, torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/deepmimic sweep search_spaces/quickstart.yaml --out runs/quickstart

lint: $(STAMP)
	$(VENV)/bin/ruff check platform tests benchmarks

# The browser test drives Debian's Chromium (Playwright's own download needs the internet).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	$(APT) chromium

# Two pytest-xdist workers: one alone leaves the cores idle while its tests wait on servers and sleeping
# processes (benchmarks/RESULTS.md); tests/conftest.py groups and orders the modules for them.
# `make test TEST_WORKERS=0`: one process, serially. (A comment after the value would leave its spaces in it.)
TEST_WORKERS ?= 2
test: lint $(CHROMIUM)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=25 tests

# A cluster's environment without the project: Ray and PyTorch at the project's versions (pip's cache reused).
CLUSTER ?= .venv-cluster
$(CLUSTER)/.installed:
	test -x $(CLUSTER)/bin/python || python3 -m venv $(CLUSTER)
	$(CLUSTER)/bin/python -m pip install -q $(TORCH) 'ray[default,data,train,tune]==2.60.0' 2>&1 | $(QUIET_PIP)
	touch $@

# Two local nodes from that environment, the quickstart submitted as a job: clusters/local_demo.sh.
cluster-demo: $(STAMP) $(CLUSTER)/.installed
	CLUSTER=$(CLUSTER) PROJECT=$(VENV) clusters/local_demo.sh

# The project on Ray's image (Dockerfile), for KubeRay and other clusters that run images.
REGISTRY ?= deepmimic
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' platform/deepmimic/__init__.py)
image:
	docker build -t $(REGISTRY)/deepmimic-sweep:$(VERSION) .

# Benchmarks run on demand (never in `make test`): Fashion-MNIST comes from Debian.
FASHION := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
$(FASHION):
	$(APT) dataset-fashion-mnist

bench: $(STAMP) $(FASHION)
	for b in training_throughput inference ray_overhead sweep_reuse fixed_costs end_to_end; do $(PY) benchmarks/$$b.py; done

# On a CUDA machine, with PyTorch and this checkout (Ray, MLflow optional): the core loop against the plain
# loop on Table 5's mentor and on Table 1's models (Fashion-MNIST: Debian's files or DEEPMIMIC_FASHION_ROOT), and the
# quickstart's bare work (with the sweep beside it where Ray is installed).
BENCH_PY ?= python3
bench-gpu:
	PYTHONPATH=platform:$$PYTHONPATH $(BENCH_PY) benchmarks/training_throughput.py --device cuda --tiny 20000 --epochs 3 --seeds 1
	PYTHONPATH=platform:$$PYTHONPATH $(BENCH_PY) benchmarks/fixed_costs.py --device cuda --rounds 2
	PYTHONPATH=platform:$$PYTHONPATH $(BENCH_PY) benchmarks/training_throughput.py --device cuda --epochs 5 --seeds 2

clean:
	rm -rf $(VENV) runs .pytest_cache
