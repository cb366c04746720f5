"""Building and publishing the book: tooling a reader of the book never calls.

``pip install explodebook`` gives readers the runtime package (runs, traces,
diagnosis, plots, widgets); this subpackage is what ``make book`` and the
Pages workflow run, with the book's own environment (``requirements.txt``:
Jupyter Book, MyST-NB, jupytext):

- `explodebook.book.sources`: the one reader of ``_config.yml``, ``_toc.yml``
  and the chapters' code cells;
- `explodebook.book.assets`: the book's JavaScript, from the npm registry
  (``python -m explodebook.book.assets _vendor``);
- `explodebook.book.prebuild`: the chapters executed in parallel into the
  build's execution cache (``python -m explodebook.book.prebuild``);
- `explodebook.book.publish`: launch notebooks, the launch branch, the site
  check (``python -m explodebook.book.publish``);
- `explodebook.book.expressions`: the chapters' inline expressions
  (``{eval}``), evaluated by the prebuild, rendered by the Sphinx extension;
- `explodebook.book.lab`: JupyterLab's contents manager for the chapters
  (``make lab``);
- `explodebook.book.lint`: a fast check of the chapters' sources
  (``python -m explodebook.book.lint``);
- ``explodebook.book.sphinxext``: the book's Sphinx extension (``_config.yml``).

Importing ``explodebook.book`` imports none of them.
"""
