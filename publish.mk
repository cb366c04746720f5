# Publishing the book (included by the Makefile). The GitHub Pages workflow
# (.github/workflows/pages.yml) runs `make pages` and `make launch-tree`;
# both run offline on any machine, after `make book` has fetched _vendor.

# Generated, never committed: the launch notebooks and the launch branch's tree.
NOTEBOOKS_DIR ?= _build/notebooks
LAUNCH_DIR    ?= _build/launch

.PHONY: notebooks pages pages-student launch-tree

# Every chapter of _toc.yml as an .ipynb (jupytext, no outputs), under
# $(NOTEBOOKS_DIR)/chapters/: what the Colab/Binder launch buttons open.
notebooks: $(STAMP)
	$(BIN)/python -m explodebook.book.publish notebooks $(NOTEBOOKS_DIR)

# The site, ready to upload to GitHub Pages or any static host, under any
# sub-path (every link is relative): _build/html. Fails on a broken link.
# With the Chinese edition (PAGES_ZH=1, the default) under zh/, every page
# of each edition linking to the same page of the other (plain relative
# links: explodebook.book.i18n link-editions); PAGES_ZH=0: English only.
PAGES_ZH ?= 1

pages: book $(if $(filter 1,$(PAGES_ZH)),book-zh)
	rm -rf _build/html/zh
ifeq ($(PAGES_ZH),1)
	cp -r $(ZH_OUT)/_build/html _build/html/zh
	$(BIN)/python -m explodebook.book.i18n link-editions _build/html zh
endif
	$(BIN)/python -m explodebook.book.publish check-site _build/html
	touch _build/html/.nojekyll
	@echo "Upload $(CURDIR)/_build/html (for example to https://<org>.github.io/<repo>/)"

# The student edition, the same way: _build/student/_build/html, with the
# Chinese student edition under zh/ (PAGES_ZH=1).
pages-student: book-student $(if $(filter 1,$(PAGES_ZH)),book-student-zh)
	rm -rf _build/student/_build/html/zh
ifeq ($(PAGES_ZH),1)
	cp -r $(ZH_STUDENT_OUT)/_build/html _build/student/_build/html/zh
	$(BIN)/python -m explodebook.book.i18n link-editions _build/student/_build/html zh
endif
	$(BIN)/python -m explodebook.book.publish check-site _build/student/_build/html
	touch _build/student/_build/html/.nojekyll
	@echo "Upload $(CURDIR)/_build/student/_build/html"

# The launch branch's files (repository.branch in _config.yml): the committed
# files of HEAD, the notebooks next to their chapters, Binder's configuration.
# The workflow commits this tree and force-pushes it to that branch.
launch-tree: $(STAMP)
	$(BIN)/python -m explodebook.book.publish launch-tree $(LAUNCH_DIR)
