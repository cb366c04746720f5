# The Chinese edition (中文版): gettext catalogs in locales/zh_CN, built from
# the same sources and the same execution cache as the English book
# (issue 20). A contributor who edits English prose runs `make catalogs`:
# the changed messages come back fuzzy or untranslated in the .po files,
# and tests/test_zh.py fails until they are translated again.
ZH_LANG  ?= zh_CN
# jupyter-book --path-output folders: the .pot templates in
# _build/i18n/_build/gettext (the gettext builder needs its own doctrees,
# Sphinx refuses to share them with html), the edition in
# _build/zh/_build/html.
I18N_OUT ?= _build/i18n
ZH_OUT   ?= _build/zh
# The Chinese student edition (no solutions): _build/student-zh/_build/html.
ZH_STUDENT_OUT ?= _build/student-zh
# What the generated configurations are made by.
EDITION_CODE := explodebook/book/i18n.py explodebook/book/editions.py explodebook/coursework/edition.py

.PHONY: catalogs catalog-stats book-zh book-student-zh bench-zh

# The book's configuration with execute.cache pointing at _build/.jupyter_cache
# (absolute): the other --path-output folders read the English build's cache.
_build/i18n_config.yml: _config.yml $(EDITION_CODE) $(STAMP)
	$(BIN)/python -m explodebook.book.i18n config $@

_build/zh_config.yml: _config.yml $(EDITION_CODE) $(STAMP)
	$(BIN)/python -m explodebook.book.i18n config $@ --language $(ZH_LANG)

# The student edition's configuration (explodebook.coursework's) made into
# the Chinese edition's by the same explodebook.book.i18n.edition_config.
_build/student_zh_config.yml: _config.yml $(EDITION_CODE) $(STAMP)
	$(BIN)/python -m explodebook.book.editions student-config $@ --language $(ZH_LANG)

# _toc.yml with its part captions translated (Sphinx cannot translate them).
_build/zh_toc.yml: _toc.yml $(wildcard locales/$(ZH_LANG)/LC_MESSAGES/*.po) $(STAMP)
	$(BIN)/python -m explodebook.book.i18n toc $@ --language $(ZH_LANG)

# English messages -> .pot templates -> locales/$(ZH_LANG)/LC_MESSAGES/*.po
# (figures.pot: the text of the figures the English build recorded,
# explodebook.book.figurecache; values.pot: the words of the {eval} values
# the pages show, explodebook.book.valuetext)
# (new messages untranslated, changed ones fuzzy, removed ones dropped; the
# API reference stays English: explodebook.book.i18n.ENGLISH_ONLY), then
# the catalogs' statistics.
catalogs: assets _build/i18n_config.yml
	$(BIN)/python -m explodebook.book.prebuild . --jobs $(JOBS)
	$(BIN)/jupyter-book build . --builder custom --custom-builder gettext --config _build/i18n_config.yml --path-output $(I18N_OUT)
	$(BIN)/python -m explodebook.book.figurecache template $(I18N_OUT)/_build/gettext/figures.pot
	$(BIN)/python -m explodebook.book.valuetext $(I18N_OUT)/_build/gettext/values.pot
	$(BIN)/python -m explodebook.book.i18n update $(ZH_LANG) $(I18N_OUT)/_build/gettext

catalog-stats: $(STAMP)
	$(BIN)/python -m explodebook.book.i18n stats $(ZH_LANG)

# The edition; Sphinx compiles the catalogs (.mo, not committed) itself.
# Every page comes from the execution cache ("Using cached notebook"): the
# build first copies the English cache into _build/.jupyter_cache-$(ZH_LANG)
# with every figure redrawn in Chinese (explodebook.book.figurecache; needs
# a CJK font, e.g. Debian's fonts-wqy-microhei).
book-zh: assets _build/zh_config.yml _build/zh_toc.yml
	$(BIN)/python -m explodebook.book.prebuild . --jobs $(JOBS)
	$(BIN)/jupyter-book build . -W -n --keep-going --config _build/zh_config.yml --toc _build/zh_toc.yml --path-output $(ZH_OUT)
	@echo
	@echo "The Chinese edition is at $(CURDIR)/$(ZH_OUT)/_build/html/index.html"

# The Chinese student edition: every solution left out, as in
# `make book-student`; nothing executed either.
book-student-zh: assets _build/student_zh_config.yml _build/zh_toc.yml
	$(BIN)/python -m explodebook.book.prebuild . --jobs $(JOBS)
	$(BIN)/jupyter-book build . -W -n --keep-going --config _build/student_zh_config.yml --toc _build/zh_toc.yml --path-output $(ZH_STUDENT_OUT)
	@echo
	@echo "The Chinese student edition is at $(CURDIR)/$(ZH_STUDENT_OUT)/_build/html/index.html"

# The Chinese edition's cost beside the English build's (issue 20): what
# recording the figures adds to `make book`, and the edition's own redraw
# and render, side by side: benchmarks/zh_results.md.
bench-zh: assets
	$(BIN)/python -m explodebook.book.prebuild . --jobs $(JOBS)
	$(BIN)/python benchmarks/zh_build.py --out benchmarks/zh_results.md
