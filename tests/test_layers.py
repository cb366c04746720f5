"""The package's imports follow the data flow of the design, read off the source.

``RunSpec -> backend -> Trace -> metrics -> diagnose / plots / widgets /
sweep`` (shared/DESIGN.md): what a run is and records never imports what
runs, judges, draws or sweeps it; backends and monitors never import
plots, widgets or sweeps; judging and drawing never start a run; nothing
in the runtime package imports the book tooling (``explodebook.book``) or
the coursework (``explodebook.coursework``), or the code the chapters share
(``remedies``, ``digits``); and only the backends, the monitors,
`explodebook.frameworks` and the reader's-own-model example
(``digits``) import a deep-learning framework.

Imports are read with ``ast`` (top-level and inside functions alike, so a
lazy import counts), not by importing anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "explodebook"
# Subpackages with owners and rules of their own: the book tooling and the
# coursework.
APART = ("book", "coursework")
FRAMEWORKS = ("torch", "tensorflow", "keras", "jax")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def runtime_modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        inner = name.split(".")[1:2]
        if inner and inner[0] in APART:
            continue
        modules[name] = path
    return modules


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it, as dotted names.

    ``from a import b`` counts as importing ``a`` and ``a.b`` (``b`` may be
    a submodule), so a rule on ``a.b`` sees it.
    """
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


MODULES = runtime_modules()
IMPORTS = {name: imports(path) for name, path in MODULES.items()}


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    """Whether ``module`` is one of ``prefixes`` (``explodebook.`` left out) or inside one."""
    return any(
        module == f"explodebook.{p}" or module.startswith(f"explodebook.{p}.") for p in prefixes
    )


def offending(importer: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{name} imports {module}"
        for name, found in IMPORTS.items()
        if within(name, importer)
        for module in found
        if within(module, forbidden)
    )


# What a run is and what it records: the bottom of the data flow.
RECORD = (
    "checks", "spec", "data", "weights", "frameworks", "trace", "records", "tracefile",
    "flat", "metrics", "costs", "budget", "progress",
)  # fmt: skip
# What runs a spec: the backends and the paths to them.
RUNNING = ("backends", "cache", "sweep", "grid", "timesteps", "liveruns")
# What judges a trace, and how the verdict is written (parity: how two
# frameworks' traces of one spec compare).
JUDGING = ("diagnose", "signs", "report", "outcome", "parity")
# What draws or shows a trace, or a sweep.
SHOWING = ("plots", "render", "widgets", "scrubber", "notebook")
# Code the chapters share, on top of everything: it runs, judges and draws
# (remedies: chapter 10's tables and figures), or is a model of the
# reader's own written in each framework's API (digits: chapter 11's CNN
# and loops). Nothing else in the package depends on it.
CHAPTER = ("remedies", "digits")
#: Modules that may import a framework besides the backends, the monitors
#: and explodebook.frameworks: a reader's-own-model example is written in
#: the frameworks' own API (after explodebook.frameworks has settled the
#: import order).
FRAMEWORK_EXAMPLES = ("explodebook.digits",)

RULES = [
    # (who, must not import, why)
    (RECORD, RUNNING + JUDGING + SHOWING + ("monitor", "theory"),
     "a RunSpec, a Trace and their metrics come before whatever runs, judges or draws them"),
    (("backends",), JUDGING + SHOWING + ("monitor", "cache", "sweep", "timesteps"),
     "a backend turns a RunSpec into a Trace and nothing more"),
    (("monitor",), JUDGING + SHOWING + ("cache", "sweep", "timesteps"),
     "a monitor feeds the same Trace as a backend, and nothing more"),
    (("diagnose", "signs", "report"), RUNNING + SHOWING + ("monitor",),
     "diagnose reads a Trace: it neither runs nor draws"),
    (("plots",), RUNNING + JUDGING + ("monitor", "widgets", "scrubber"),
     "plots are functions of traces: they never start a run"),
    (("sweep",), JUDGING + SHOWING + ("monitor",),
     "running a sweep is apart from showing it (explodebook.scrubber)"),
    (("theory",), RUNNING + JUDGING + SHOWING + ("monitor", "trace", "frameworks"),
     "the theory is plain numpy, before any framework or run"),
    (RECORD + RUNNING + JUDGING + SHOWING + ("monitor", "theory"), CHAPTER,
     "the chapters' shared code sits on top: the package never depends on it"),
]  # fmt: skip


def test_every_runtime_module_is_read() -> None:
    # A guard against a rule that passes because it reads nothing.
    for name in ("explodebook.spec", "explodebook.trace", "explodebook.plots.curves",
                 "explodebook.backends.torch", "explodebook.monitor.keras"):  # fmt: skip
        assert name in IMPORTS, name
    assert "explodebook.trace" in IMPORTS["explodebook.metrics"]
    assert "explodebook.book.publish" not in set().union(*IMPORTS.values())


@pytest.mark.parametrize("importer, forbidden, why", RULES, ids=[r[0][0] for r in RULES])
def test_layers_follow_the_data_flow(
    importer: tuple[str, ...], forbidden: tuple[str, ...], why: str
) -> None:
    assert offending(importer, forbidden) == [], why


def test_every_module_has_a_layer() -> None:
    # A new module must say where it stands: add it to a group above.
    groups = RECORD + RUNNING + JUDGING + SHOWING + CHAPTER + ("monitor", "theory")
    assert [name for name in MODULES if name != "explodebook" and not within(name, groups)] == []


def test_the_runtime_package_never_imports_the_book_tooling_or_the_coursework() -> None:
    found = sorted(
        f"{name} imports {module}"
        for name, modules in IMPORTS.items()
        for module in modules
        if within(module, ("book", "coursework", "publish"))
    )
    assert found == []


def test_only_backends_monitors_and_frameworks_import_a_framework() -> None:
    def allowed(name: str) -> bool:
        # explodebook.frameworks, and a backend's or monitor's module of
        # one framework: backends.torch, monitor.keras, monitor.torch_steps...
        last = name.rpartition(".")[2].split("_")[0]
        return name == "explodebook.frameworks" or name in FRAMEWORK_EXAMPLES or (
            within(name, ("backends", "monitor")) and last in ("torch", "keras")
        )

    found = sorted(
        f"{name} imports {module}"
        for name, modules in IMPORTS.items()
        if not allowed(name)
        for module in modules
        if module.split(".")[0] in FRAMEWORKS
    )
    assert found == []


# Issue 16: a module a job, small enough to read in one sitting.
MOST_LINES = 400


def test_every_module_says_its_one_job_in_a_short_file() -> None:
    problems = []
    for name, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        doc = ast.get_docstring(ast.parse(text))
        if not doc or not doc.splitlines()[0].strip():
            problems.append(f"{name}: no docstring whose first line says its job")
        if lines > MOST_LINES:
            problems.append(f"{name}: {lines} lines (at most {MOST_LINES}): split it by job")
    assert problems == []
