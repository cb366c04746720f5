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

.PHONY: catalogs catalog-stats book-zh

# The book's configuration with execute.cache pointing at _build/.jupyter_cache
# (absolute): the other --path-output folders read the English build's cache.
_build/i18n_config.yml: _config.yml $(STAMP)
	$(BIN)/python -m explodebook.book.i18n config $@

_build/zh_config.yml: _config.yml $(STAMP)
	$(BIN)/python -m explodebook.book.i18n config $@ --language $(ZH_LANG)

# _toc.yml with its part captions translated (Sphinx cannot translate them).
_build/zh_toc.yml: _toc.yml $(wildcard locales/$(ZH_LANG)/LC_MESSAGES/*.po) $(STAMP)
	$(BIN)/python -m explodebook.book.i18n toc $@ --language $(ZH_LANG)

# English messages -> .pot templates -> locales/$(ZH_LANG)/LC_MESSAGES/*.po
# (new messages untranslated, changed ones fuzzy, removed ones dropped; the
# API reference stays English: explodebook.book.i18n.ENGLISH_ONLY), then
# the catalogs' statistics.
catalogs: assets _build/i18n_config.yml
	$(BIN)/python -m explodebook.book.prebuild . --jobs $(JOBS)
	$(BIN)/jupyter-book build . --builder custom --custom-builder gettext --config _build/i18n_config.yml --path-output $(I18N_OUT)
	$(BIN)/python -m explodebook.book.i18n update $(ZH_LANG) $(I18N_OUT)/_build/gettext

catalog-stats: $(STAMP)
	$(BIN)/python -m explodebook.book.i18n stats $(ZH_LANG)

# The edition; Sphinx compiles the catalogs (.mo, not committed) itself.
# Every page comes from the execution cache ("Using cached notebook").
book-zh: assets _build/zh_config.yml _build/zh_toc.yml
	$(BIN)/python -m explodebook.book.prebuild . --jobs $(JOBS)
	$(BIN)/jupyter-book build . -W -n --keep-going --config _build/zh_config.yml --toc _build/zh_toc.yml --path-output $(ZH_OUT)
	@echo
	@echo "The Chinese edition is at $(CURDIR)/$(ZH_OUT)/_build/html/index.html"
