# The Chinese edition (中文版): gettext catalogs in locales/zh_CN, built from
# the same sources and the same execution cache as the English book.
# Targets are added here as the edition is built (issue 20).
