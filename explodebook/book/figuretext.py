"""The text drawn in the book's figures: recorded at execution, translated and redrawn for another edition.

The Chinese edition shows the English edition's runs: its pages come from
the same execution cache (issue 20), so the figures' PNGs there were drawn
with English titles, labels and legends. Executing every page again to
draw them in Chinese would double the book's execution. Instead:

1. While the book executes, every kernel runs `install`, which wraps
   matplotlib's ``FigureCanvasBase.print_figure``: each PNG a figure is
   saved as (the inline backend's outputs, a widget's image) is recorded
   in a *figure store*, a folder of ``<sha256 of the PNG>.pickle`` files
   holding the pickled figure and the arguments it was saved with.
2. `messages` lists a figure's English text (titles, axis labels, legend
   entries, annotations, category tick labels), the messages of the
   ``figures`` gettext catalog (`explodebook.book.figurecache` writes its
   template).
3. `translate` puts a catalog's translations into an unpickled figure and
   gives its text a CJK font (`cjk_font`), and `redraw` saves it again with
   the arguments of the original: same data, same size and resolution,
   only the words differ.

Text that mixes mathtext (``$...$``) and Chinese is drawn entirely in the
CJK font: mathtext draws a string's plain parts in the first font of the
text's family, without falling back glyph by glyph.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["install", "record", "messages", "translate", "redraw", "cjk_font", "png_key", "ENV", "KERNEL_ARGUMENTS"]

#: The environment variable naming the figure store a kernel records into.
ENV = "EXPLODEBOOK_FIGURE_STORE"

#: A kernel's command-line arguments that make it call `install` as it starts
#: (``exec_lines`` run before the first cell; this one binds no name).
KERNEL_ARGUMENTS = [f"--IPKernelApp.exec_lines=__import__({__name__!r}, fromlist=['install']).install()"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Font files of CJK fonts that Debian packages install (fonts-wqy-microhei,
# fonts-noto-cjk, fonts-wqy-zenhei), in order of preference; a file's name
# is enough to recognise it without reading every font on the system.
CJK_FONT_FILES = ("wqy-microhei.ttc", "NotoSansCJK-Regular.ttc", "NotoSansCJKsc-Regular.otf", "wqy-zenhei.ttc")

# A message has a word in it: two ASCII letters in a row outside mathtext.
_MATH = re.compile(r"(?<!\\)\$.*?(?<!\\)\$")
_WORD = re.compile(r"[A-Za-z]{2}")
# A setting as code writes it, "learning_rate = 0.001": the same in every language.
_SETTING = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_]* = [-+0-9.e]+\s*\Z")


def png_key(png: bytes) -> str:
    """The name a PNG's figure is stored under: the SHA-256 of its bytes (hex, 64 characters)."""
    return hashlib.sha256(png).hexdigest()


def record(store: str | Path, figure: Any, png: bytes, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Path | None:
    """Store ``figure`` (pickled) with the ``print_figure`` arguments that drew ``png``.

    A figure that cannot be pickled (an artist holding a lambda, say) gets
    a ``.error`` file with the reason instead, so that a later redraw says
    why it kept the English image.

    Returns:
        the file written, or None if the store already had this PNG.
    """
    folder = Path(store)
    key = png_key(png)
    target = folder / f"{key}.pickle"
    if target.exists():
        return None
    folder.mkdir(parents=True, exist_ok=True)
    try:
        data = pickle.dumps({"figure": figure, "args": args, "kwargs": kwargs}, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - any pickling failure is reported, never raised into the page
        target = folder / f"{key}.error"
        data = f"{type(exc).__name__}: {exc}".encode()
    # written under a temporary name first: two kernels may record the same PNG
    partial = target.with_name(f"{target.name}.{os.getpid()}.part")
    partial.write_bytes(data)
    os.replace(partial, target)
    return target


def install(store: str | Path | None = None) -> bool:
    """Record every PNG that matplotlib saves in this process into ``store``.

    Args:
        store: the figure store's folder (default: the ``EXPLODEBOOK_FIGURE_STORE``
            environment variable; nothing is installed without either).

    Returns:
        whether recording is on. Calling it again changes the store only.
    """
    import matplotlib.backend_bases as bases

    store = store or os.environ.get(ENV)
    if not store:
        return False
    original = getattr(bases.FigureCanvasBase.print_figure, "_explodebook_original", None)
    original = original or bases.FigureCanvasBase.print_figure

    @functools.wraps(original)
    def print_figure(self: Any, filename: Any, *args: Any, **kwargs: Any) -> Any:
        start = filename.tell() if isinstance(filename, io.BytesIO) else None
        result = original(self, filename, *args, **kwargs)
        if start is not None:
            png = filename.getvalue()[start:]
            if png.startswith(PNG_SIGNATURE):
                try:
                    record(store, self.figure, png, args, kwargs)
                except OSError:  # a full disk must not fail the page; the redraw reports the gap
                    pass
        return result

    print_figure._explodebook_original = original  # type: ignore[attr-defined]
    bases.FigureCanvasBase.print_figure = print_figure  # type: ignore[method-assign]
    return True


def load(path: str | Path) -> dict[str, Any]:
    """A stored figure: ``{"figure": Figure, "args": tuple, "kwargs": dict}``."""
    with open(path, "rb") as handle:
        return pickle.load(handle)  # noqa: S301 - the store is written by this book's own build


def _tick_labels(figure: Any) -> set[int]:
    """ids of the figure's tick label Texts (the axis formatters redraw them)."""
    ids = set()
    for ax in figure.get_axes():
        for axis in ax._axis_map.values():
            for tick in axis.majorTicks + axis.minorTicks:
                ids.update((id(tick.label1), id(tick.label2)))
    return ids


def _texts(figure: Any) -> Iterator[Any]:
    """The figure's Text artists other than tick labels, each once."""
    from matplotlib.text import Text

    ticks = _tick_labels(figure)
    seen = set()
    for text in figure.findobj(Text):
        if id(text) not in ticks and id(text) not in seen:
            seen.add(id(text))
            yield text


def _tick_dict(formatter: Any) -> dict[Any, Any] | None:
    """The {tick: label} dict of a formatter made by ``set_ticks(..., labels=...)``, else None.

    matplotlib keeps such labels as ``FuncFormatter(partial(Axis._format_with_dict, labels))``.
    """
    from matplotlib.axis import Axis
    from matplotlib.ticker import FuncFormatter

    func = formatter.func if isinstance(formatter, FuncFormatter) else None
    if isinstance(func, functools.partial) and func.func is Axis._format_with_dict and func.args:
        return func.args[0]
    return None


def _category_formatters(figure: Any) -> Iterator[Any]:
    """The tick formatters of the figure's axes whose labels are given text (words), not numbers."""
    from matplotlib.category import StrCategoryFormatter
    from matplotlib.ticker import FixedFormatter

    for ax in figure.get_axes():
        for axis in ax._axis_map.values():
            for formatter in (axis.get_major_formatter(), axis.get_minor_formatter()):
                if isinstance(formatter, (FixedFormatter, StrCategoryFormatter)) or _tick_dict(formatter) is not None:
                    yield formatter


def _formatter_labels(formatter: Any) -> list[str]:
    from matplotlib.ticker import FixedFormatter

    if isinstance(formatter, FixedFormatter):
        return [str(label) for label in formatter.seq]
    labels = _tick_dict(formatter)
    if labels is not None:
        return [str(label) for label in labels.values()]
    return [str(label) for label in formatter._units]


def is_message(text: str) -> bool:
    """Whether ``text`` has words to translate (not only numbers, symbols, mathtext, or ``name = value`` of code)."""
    return bool(_WORD.search(_MATH.sub("", text))) and not _SETTING.match(text)


def messages(figure: Any) -> list[str]:
    """The figure's English text to translate, in drawing order, each once."""
    found: dict[str, None] = {}
    for text in _texts(figure):
        found.setdefault(text.get_text(), None)
    for formatter in _category_formatters(figure):
        for label in _formatter_labels(formatter):
            found.setdefault(label, None)
    return [text for text in found if is_message(text)]


@functools.cache
def cjk_font() -> str:
    """The family name of an installed CJK font, registered with matplotlib.

    Raises:
        RuntimeError: no CJK font file is installed; says which package to install.
    """
    from matplotlib import font_manager

    by_name = {Path(path).name: path for path in font_manager.findSystemFonts()}
    for name in CJK_FONT_FILES:
        if name in by_name:
            # matplotlib's font list is cached across sessions: a font
            # installed after it was built is only found when added by path
            font_manager.fontManager.addfont(by_name[name])
            return font_manager.FontProperties(fname=by_name[name]).get_name()
    raise RuntimeError(
        "no CJK font found for the Chinese edition's figures (looked for "
        + ", ".join(CJK_FONT_FILES)
        + "); install one, e.g. `apt-get install fonts-wqy-microhei` on Debian or Ubuntu"
    )


def translate(figure: Any, lookup: Callable[[str], str | None]) -> list[str]:
    """Put ``lookup``'s translations into ``figure``, in a CJK font.

    Args:
        figure: a matplotlib Figure (changed in place).
        lookup: the translation of a message, or None if there is none.

    Returns:
        the figure's messages that ``lookup`` has no translation for (they stay English).
    """
    import matplotlib
    from matplotlib.category import StrCategoryFormatter
    from matplotlib.ticker import FixedFormatter

    font = cjk_font()
    missing: list[str] = []

    def translated(text: str) -> str:
        if not is_message(text):
            return text
        result = lookup(text)
        if result is None:
            missing.append(text)
            return text
        return result

    # Only changed text gets the CJK font: the rest is drawn as it was.
    for text in _texts(figure):
        old = text.get_text()
        new = translated(old)
        if new != old:
            text.set_text(new)
            # mathtext's plain parts are drawn in the family's first font only
            text.set_fontfamily([font] if "$" in new else [*text.get_fontfamily(), font])
    for formatter in _category_formatters(figure):
        labels = _formatter_labels(formatter)
        if isinstance(formatter, FixedFormatter):
            formatter.seq = [translated(label) for label in labels]
        elif isinstance(formatter, StrCategoryFormatter):
            formatter._units = {translated(str(label)): value for label, value in formatter._units.items()}
        else:  # set_ticks(..., labels=...)
            ticks = _tick_dict(formatter)
            formatter.func = functools.partial(formatter.func.func, {t: translated(str(v)) for t, v in ticks.items()})
        if _formatter_labels(formatter) != labels:
            # tick labels are remade at drawing time from the axis' tick settings
            family = [*matplotlib.rcParams["font.family"], font]
            formatter.axis.set_tick_params(which="both", labelfontfamily=family)
    return list(dict.fromkeys(missing))


def redraw(stored: dict[str, Any], lookup: Callable[[str], str | None]) -> tuple[bytes, list[str]]:
    """A stored figure saved again as PNG, with ``lookup``'s translations.

    Returns:
        the new PNG bytes, and the messages left untranslated.
    """
    import matplotlib.backend_bases as bases

    figure = stored["figure"]
    missing = translate(figure, lookup)
    buffer = io.BytesIO()
    print_figure = getattr(bases.FigureCanvasBase.print_figure, "_explodebook_original",
                           bases.FigureCanvasBase.print_figure)  # fmt: skip
    print_figure(figure.canvas, buffer, *stored["args"], **stored["kwargs"])
    import matplotlib.pyplot as plt

    plt.close(figure)
    return buffer.getvalue(), missing
