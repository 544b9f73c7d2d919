# vlab: `make lab` opens the course, `make test` runs every test. Both install what is missing first.
#
# Python packages go into .venv (from PyPI, as pyproject.toml lists them). System tools come from
# apt-get where it works; elsewhere we say exactly what to install and carry on where we can.

PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.stamp-install
HOST    ?= 127.0.0.1
PORT    ?= 8888
# apt-get needs root; use sudo when we are not root and sudo exists.
SUDO    := $(shell [ "$$(id -u)" = 0 ] || { command -v sudo >/dev/null 2>&1 && echo sudo; })

.PHONY: lab demo slides book test install system-tools dot cross browser sandbox bench fuzz fuzz-neighbour doctor exercises binder-badge clean

# JupyterLab opens on the chapter index, or on the notebooks folder until there is one. It listens on
# localhost only; as root (containers, lab machines) it needs --allow-root.
START   := /lab/tree/notebooks$(if $(wildcard notebooks/00_start_here.ipynb),/00_start_here.ipynb)

lab: install dot
	@$(BIN)/python -c 'import socket; socket.socket().bind(("$(HOST)", $(PORT)))' 2>/dev/null || \
	  { echo "Port $(PORT) is in use (is the course already open? its link still works): stop that server," \
	         "or choose another port: make lab PORT=8889"; exit 1; }
	@$(BIN)/vlab doctor || true
	@echo "Opening the course at http://$(HOST):$(PORT)$(START) -- JupyterLab prints this address with"
	@echo "its access token below: open that link (Ctrl-C stops the server)."
	$(BIN)/jupyter lab --no-browser --ip=$(HOST) --port=$(PORT) --ServerApp.port_retries=0 $(if $(filter 0,$(shell id -u)),--allow-root,) \
		--ServerApp.root_dir=$(CURDIR) --LabApp.default_url=$(START)

# The chapters' widgets as Voila dashboards, for a projector (localhost; CHAPTER=2 for one chapter).
demo: install
	$(BIN)/vlab demo $(CHAPTER)

# A chapter as a reveal.js slideshow with live widgets (localhost; CHAPTER=2 for chapter 2).
slides: install
	$(BIN)/vlab demo --slides $(CHAPTER)

# A static site of the executed chapters (diagrams, widget snapshots; nothing fetched) in _build/html.
book: install dot
	$(BIN)/vlab site _build/html

# One pytest worker per core (pytest-xdist), each given whole test files, so that a file's fixtures
# (a built guest, a QEMU run, a JupyterLab server) are made once: most tests wait on one core.
test: install system-tools
	$(BIN)/python -m pytest -n auto --dist loadfile

install: $(STAMP)

$(STAMP): pyproject.toml jupyter/overrides.json
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "vlab needs Python 3.11 or newer"' \
		|| { echo "vlab needs Python 3.11+: set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/nbstripout --install --attributes .gitattributes 2>/dev/null || true
	@# JupyterLab's settings overrides: no news or update prompts over the course
	mkdir -p $(VENV)/share/jupyter/lab/settings && cp jupyter/overrides.json $(VENV)/share/jupyter/lab/settings/
	touch $@

# `dot` draws the course's diagrams; the cross compiler and QEMU build and cross-check C guests;
# Chromium runs the course in a real browser (Playwright drives it; it never downloads a browser);
# bubblewrap is the sandbox `vlab grade` runs students' code in.
system-tools: dot cross browser sandbox

dot:
	@$(call apt_install,dot,graphviz,diagrams fall back to text without it)

cross:
	@$(call apt_install,aarch64-linux-gnu-gcc,gcc-aarch64-linux-gnu,the C-guest tests are skipped without it)
	@$(call apt_install,qemu-system-aarch64,qemu-system-arm,the QEMU cross-check tests are skipped without it)

# apt_install(command, debian-package, consequence): install the package when the command is missing.
define apt_install
	command -v $(1) >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && { [ "$$(id -u)" = 0 ] || [ -n "$(SUDO)" ]; }; then \
	    echo "Installing $(2) (for $(1)) with apt-get"; \
	    { $(SUDO) apt-get install -y --no-install-recommends $(2) >/dev/null 2>&1 || \
	      { $(SUDO) apt-get update -qq >/dev/null && $(SUDO) apt-get install -y --no-install-recommends $(2) >/dev/null; }; } \
	    || echo "WARNING: apt-get could not install $(2); $(3)."; \
	  else \
	    echo "WARNING: $(1) is missing and cannot be installed here: install the package '$(2)'" \
	         "(Debian/Ubuntu: apt-get install $(2); macOS: brew install $(2); conda: see environment.yml); $(3)."; \
	  fi; }
endef

browser:
	@$(call apt_install,chromium,chromium,the browser tests are skipped without it)

sandbox:
	@$(call apt_install,bwrap,bubblewrap,vlab grade then confines students' code on a best-effort basis only)

doctor: install
	$(BIN)/vlab doctor

bench: install
	$(BIN)/python benchmarks/machine.py
	$(BIN)/python benchmarks/traps.py
	$(BIN)/python benchmarks/stage2.py
	$(BIN)/python benchmarks/course.py
	$(BIN)/python benchmarks/grading.py
	$(BIN)/python benchmarks/types.py
	$(BIN)/python benchmarks/fuzz.py
	$(BIN)/python benchmarks/pv_vs_full.py
	$(BIN)/python benchmarks/migration.py
	$(BIN)/python benchmarks/chip_features.py
	$(BIN)/python benchmarks/sched.py
	$(BIN)/python benchmarks/shadow.py

exercises: install
	$(BIN)/vlab exercises

# The fuzzer at length (make test runs 2,000 programs): N generated guests, bare and in VMs, then the
# counts. SEED=S starts from seed S (default: a random one, printed); JOBS=2 uses two processes.
N ?= 10000
JOBS ?= 1
fuzz: install
	$(BIN)/python -m vlab.fuzz $(N) --jobs $(JOBS) $(if $(SEED),--seed $(SEED))

# Isolation, fuzzed (make test runs 2,000): N hostile programs beside a victim on shared hosts, then
# the counts -- leaks, hangs, Python errors -- and programs per second. SEED and JOBS as for fuzz.
fuzz-neighbour: install
	$(BIN)/python -m vlab.fuzz $(N) --neighbour --jobs $(JOBS) $(if $(SEED),--seed $(SEED))

# Binder builds from a public GitHub repository: the README badge for this clone's `origin`.
BINDER_START := urlpath=lab/tree/notebooks/00_start_here.ipynb
binder-badge:
	@remote=$$(git remote get-url origin 2>/dev/null); \
	repo=$$(printf '%s\n' "$$remote" | sed -nE 's#^(https://github\.com/|git@github\.com:)([^/]+/[^/]+)$$#\2#p' | sed 's#\.git$$##'); \
	if [ -z "$$repo" ]; then \
	  echo "No GitHub remote 'origin' here (found: '$${remote:-none}'): Binder builds from a public GitHub" \
	       "repository -- push there, then run this again." >&2; exit 1; fi; \
	echo "[![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/$$repo/HEAD?$(BINDER_START))"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis test-artifacts
