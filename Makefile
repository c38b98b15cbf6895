# make course  — set up (once) and run the course headless (main job)
# make test    — set up (once) and run the test suite
# make lab     — set up (once) and open the course in JupyterLab
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The offline CIFAR-10 JPEG mirror, when it sits beside the checkout (development machines
# and CI). Users without it get torchvision's download of the official files.
MIRROR := $(wildcard $(abspath ../shared/data/cifar10-jpeg.tar.xz))
ifneq ($(MIRROR),)
export DPRP_CIFAR10_MIRROR ?= $(MIRROR)
endif
# The lossless CIFAR-10 archive (all training images, test images 0-999), for the paper-length set.
LOSSLESS := $(wildcard $(abspath ../shared/data/cifar10-lossless-sprites.tar))
ifneq ($(LOSSLESS),)
export DPRP_CIFAR10_LOSSLESS ?= $(LOSSLESS)
endif
export MPLBACKEND ?= Agg
MODE ?= auto
# pytest-xdist workers for `make test`, each with its share of the cores: two more than the cores,
# since workers also wait on kernels, the browser and subprocesses (measured on 2 cores, one after
# the other: 408 s with 4 workers, 443 s with 3; on a later commit, 477 s with 6 against 408 s with 4).
# TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; print((os.cpu_count() or 1) + 2)')
LAB_ARGS ?=
# JupyterLab refuses to start as root (a container, a root shell) unless told it may.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: setup browser course test lab release clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 is needed, found " + sys.version'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# The browser tests drive Debian's chromium (Playwright cannot download its own browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium for the browser tests (once)"; \
	  apt-get install -y -qq chromium >/dev/null 2>&1 || \
	  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null 2>&1) || \
	  echo "note: chromium could not be installed: the browser tests will be skipped"; \
	else echo "note: no chromium (apt-get install chromium as root): the browser tests will be skipped"; fi

course: setup
	$(BIN)/dprp course --mode $(MODE) --out build

test: setup browser
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --durations=30 $(PYTEST_ARGS)

release: setup
	$(BIN)/dprp release --out release

lab: setup
	@echo "Starting JupyterLab on the course; open the http://127.0.0.1:... URL it prints (with its token). Ctrl-C stops it."
	env -u MPLBACKEND $(BIN)/jupyter lab notebooks/ $(ROOT_FLAG) $(LAB_ARGS)

clean:
	rm -rf $(VENV) build
