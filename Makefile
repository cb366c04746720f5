# One-command set-up: every target creates .venv and installs
# requirements.txt first if needed (again whenever requirements change).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Open MyST .md chapters as notebooks in JupyterLab (jupytext).
LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.json
# ...through the book's contents manager, so that opening one does not mark
# it modified (explodebook.book.lab).
LAB_SERVER_CONFIG := $(VENV)/etc/jupyter/jupyter_server_config.json

# Keras runs on TensorFlow; silence its C++ log (start-up banner, CPU-dependent
# "E" lines such as oneDNN's float16 fallback), which notebooks show as stderr.
export KERAS_BACKEND ?= tensorflow
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: help venv assets book book-student assignment assignments grade test test-fast test-envs wheel lab bench bench-book bench-lab bench-fresh clean

help:
	@echo "make book       build the whole book (every chapter executed) into _build/html"
	@echo "make book-student  the same book without exercise solutions, into _build/student/_build/html"
	@echo "make assignment CHAPTER=07  turn chapters/07_*.md into an otter-grader assignment"
	@echo "make assignments  the same for every chapter"
	@echo "make grade CHAPTER=07 SUBMISSIONS=dir  grade a folder (or zip) of notebooks into a CSV, each in a sandbox"
	@echo "make test       run the test suite on every core, including a full book build (TEST_WORKERS=1: serially)"
	@echo "make test-fast  the test suite without the book build, on every core"
	@echo "make test-envs  the package from its wheel in clean environments: torch only, keras only, and the CUDA build of PyTorch beside TensorFlow"
	@echo "make lab        open the chapters in JupyterLab, widgets live"
	@echo "make bench      run the benchmarks, write benchmarks/*results.md"
	@echo "make bench-book time a cold and a warm build of the whole book"
	@echo "make bench-lab  every chapter in JupyterLab: Run All time, widget response, kernel memory"
	@echo "make bench-fresh  a fresh clone: cold make book with its install, each page alone, make test"
	@echo "make pages      the book ready for GitHub Pages or any static host (_build/html)"
	@echo "make pages-student  the student edition, the same way"
	@echo "make notebooks  the chapters as .ipynb (what Colab/Binder open) in _build/notebooks"
	@echo "make launch-tree  the files of the launch branch, in _build/launch"

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 needed (3.11 recommended), found " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	mkdir -p $(dir $(LAB_OVERRIDES))
	printf '%s\n' '{"@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}}}' > $(LAB_OVERRIDES)
	mkdir -p $(dir $(LAB_SERVER_CONFIG))
	printf '%s\n' '{"ServerApp": {"contents_manager_class": "explodebook.book.lab.ChapterContentsManager"}}' > $(LAB_SERVER_CONFIG)
	touch $(STAMP)

venv: $(STAMP)

# MathJax and the widget JavaScript, served by the book itself (no CDN).
assets: $(STAMP)
	$(BIN)/python -m explodebook.book.assets _vendor

# Chapters run two at a time (one per core) into the execution cache that
# jupyter-book then reads: it executes nothing itself (explodebook.book.prebuild).
JOBS ?= 2

book: assets
	$(BIN)/python -m explodebook.book.prebuild . --jobs $(JOBS)
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo
	@echo "The book is at $(CURDIR)/_build/html/index.html"

# The student edition: _config.yml with every exercise solution removed,
# sharing the full edition's execution cache (nothing runs twice).
book-student: assets
	$(BIN)/python -m explodebook.coursework student-config --output _build/student_config.yml
	$(BIN)/python -m explodebook.book.prebuild . --jobs $(JOBS)
	$(BIN)/jupyter-book build . -W -n --keep-going --config _build/student_config.yml --path-output _build/student
	@echo
	@echo "The student edition is at $(CURDIR)/_build/student/_build/html/index.html"

# Coursework: a chapter as an otter-grader assignment (student notebook,
# solutions, autograder.zip) in _build/assignments/<chapter>/, and grading
# a folder of submitted notebooks into _build/grades/<chapter>.csv.
CHAPTERS   = $(sort $(wildcard chapters/*.md))
CHAPTER_MD = $(wildcard chapters/$(CHAPTER)*.md)

assignment: $(STAMP)
	@test -n "$(CHAPTER)" -a -n "$(CHAPTER_MD)" || { echo "say which chapter, e.g. make assignment CHAPTER=07"; exit 2; }
	$(BIN)/python -m explodebook.coursework assign $(CHAPTER_MD)

assignments: $(STAMP)
	$(BIN)/python -m explodebook.coursework assign $(CHAPTERS)

# SUBMISSIONS: a folder, notebooks or a platform's zip of them (Canvas,
# Moodle, Blackboard, Gradescope); GRADE_OPTS e.g. "--jobs 4 --timeout 600".
grade: $(STAMP)
	@test -n "$(CHAPTER)" -a -n "$(CHAPTER_MD)" -a -n "$(SUBMISSIONS)" || { echo "usage: make grade CHAPTER=07 SUBMISSIONS=folder-or-zip [GRADE_OPTS='--jobs 4 --timeout 600']"; exit 2; }
	@test -f _build/assignments/$(basename $(notdir $(CHAPTER_MD)))/autograder/autograder.zip || { echo "no assignment for $(CHAPTER_MD) yet: run make assignment CHAPTER=$(CHAPTER) first"; exit 2; }
	$(BIN)/python -m explodebook.coursework grade _build/assignments/$(basename $(notdir $(CHAPTER_MD)))/autograder/autograder.zip $(SUBMISSIONS) --csv _build/grades/$(basename $(notdir $(CHAPTER_MD))).csv --feedback _build/grades/$(basename $(notdir $(CHAPTER_MD)))-feedback $(GRADE_OPTS)

# The suite on every core (pytest-xdist): one worker per core this process
# may use (nproc: xdist's "auto" counts physical cores, which a VM may
# under-report; TEST_WORKERS=1 runs it serially). Each worker takes whole
# files (--dist loadfile: a file's module fixtures run once), in the order
# tests/conftest.py gives (--no-loadscope-reorder: the book build first,
# the long files next); the book is built once per run, not per worker.
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
TEST_XDIST = $(if $(filter 1,$(TEST_WORKERS)),-p no:xdist,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

test: assets
	MPLBACKEND=agg $(BIN)/python -m pytest $(TEST_XDIST) --durations=15

test-fast: $(STAMP)
	MPLBACKEND=agg $(BIN)/python -m pytest $(TEST_XDIST) -m "not book"

# Environments readers bring, each a virtualenv in .envs/ (kept, and made
# anew when its requirements change), with the package installed from its
# wheel and tests/envs/smoke.py run from outside the repository:
# - torch / keras: `pip install explodebook[torch]` (or [keras]) alone;
# - cuda: PyPI's default PyTorch (the CUDA build, with triton) beside
#   TensorFlow, as on Colab: the frameworks' import order, runs, the
#   monitor and a whole chapter.
ENVS       := $(CURDIR)/.envs
WHEEL_DIR  := _build/dist
SMOKE      := $(CURDIR)/tests/envs/smoke.py
SMOKE_CHAPTER ?= chapters/11_watch_your_model.md

# The test environments' installs skip byte-compiling (pip --no-compile): the
# tests import a small part of what they install, and Python compiles that on
# import. Measured on torch + tensorflow-cpu: 17 s CPU instead of 31 s.
ENV_PIP := --quiet --no-compile

wheel: $(STAMP)
	rm -rf $(WHEEL_DIR)
	$(BIN)/python -m pip wheel --quiet --no-deps -w $(WHEEL_DIR) .

$(ENVS)/torch/.installed: pyproject.toml tests/envs/torch-cpu.txt
	rm -rf $(ENVS)/torch && $(PYTHON) -m venv $(ENVS)/torch
	$(ENVS)/torch/bin/python -m pip install $(ENV_PIP) -c tests/envs/torch-cpu.txt torch
	touch $@

$(ENVS)/keras/.installed: pyproject.toml
	rm -rf $(ENVS)/keras && $(PYTHON) -m venv $(ENVS)/keras
	touch $@

$(ENVS)/cuda/.installed: pyproject.toml tests/envs/cuda-requirements.txt
	rm -rf $(ENVS)/cuda && $(PYTHON) -m venv $(ENVS)/cuda
	$(ENVS)/cuda/bin/python -m pip install $(ENV_PIP) -r tests/envs/cuda-requirements.txt
	touch $@

# $(call smoke,ENV,EXTRAS,ARGS): install the wheel with EXTRAS into .envs/ENV
# (the package anew, its dependencies as its metadata says) and run the
# smoke test there, from a folder outside the repository.
define smoke
	$(ENVS)/$(1)/bin/python -m pip install --quiet --force-reinstall --no-deps $(wildcard $(WHEEL_DIR)/explodebook-*.whl)
	$(ENVS)/$(1)/bin/python -m pip install $(ENV_PIP) $(if $(filter torch,$(1)),-c tests/envs/torch-cpu.txt) "$(firstword $(wildcard $(WHEEL_DIR)/explodebook-*.whl))[$(2)]"
	cd "$$(mktemp -d)" && $(ENVS)/$(1)/bin/python -I $(SMOKE) $(3)
endef

test-envs: wheel $(ENVS)/torch/.installed $(ENVS)/keras/.installed $(ENVS)/cuda/.installed
	$(call smoke,torch,torch,torch)
	$(call smoke,keras,keras,keras)
	$(call smoke,cuda,torch$(comma)keras$(comma)widgets,cuda $(CURDIR)/$(SMOKE_CHAPTER))

comma := ,

lab: $(STAMP)
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) chapters/

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/scaling.py
	$(BIN)/python benchmarks/chapters.py
	$(BIN)/python benchmarks/monitor_overhead.py --out benchmarks/monitor_results.md
	$(BIN)/python benchmarks/threads.py --out benchmarks/threads_results.md
	$(BIN)/python benchmarks/grading.py --out benchmarks/grading_results.md
	$(BIN)/python benchmarks/sweep_parallel.py --out benchmarks/sweep_results.md
	$(BIN)/python benchmarks/targets.py --out benchmarks/targets_results.md

# Every chapter in JupyterLab as a learner runs it (tests/test_lab_chapters.py:
# MyST rendered, every number shown, widget, memory): benchmarks/lab_results.md.
bench-lab: $(STAMP)
	EXPLODEBOOK_LAB_CHAPTERS=all $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/test_lab_chapters.py
	cp _build/lab-chapters.md benchmarks/lab_results.md

# The whole book, cold (empty cache, chapters in parallel) and warm (after a
# prose edit), on a copy of the tree: benchmarks/book_results.md.
bench-book: assets
	$(BIN)/python benchmarks/book_build.py --skip-serial

# A fresh clone's cold `make book` (install included), every page alone in a
# new kernel, and `make test` in another fresh clone (about 30 minutes):
# benchmarks/fresh_clone_results.md, then the targets table again.
bench-fresh: $(STAMP)
	$(BIN)/python benchmarks/fresh_clone.py --out benchmarks/fresh_clone_results.md
	$(BIN)/python benchmarks/targets.py --out benchmarks/targets_results.md

clean:
	rm -rf _build _vendor

# Publishing: pages, pages-student, notebooks, launch-tree
include publish.mk

# The Chinese edition: book-zh, catalogs (issue 20)
include zh.mk
