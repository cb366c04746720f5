"""Show a sweep (or any frames) in static HTML, with a slider that needs no kernel.

The online reader of the book reads static HTML: ipywidgets need a running
kernel there and show nothing. A `Scrubber` renders every frame to a PNG at
build time and embeds them all in the page, with a range slider, previous /
next buttons and a few lines of inline JavaScript that swap the image. It
loads nothing from the network and works offline, in a saved ``.html`` file,
in Jupyter and in a Jupyter Book page, several per page.

Typical use in a chapter::

    def draw(trace):
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.semilogy(trace.grad_norm_total)
        return fig

    sw = sweep(RunSpec(steps=200), "init_scale", [0.5, 1.0, 2.0])
    scrubber(sw, draw)          # the cell's output is the slider

or both steps in one call, `sweep_scrubber`. The frames are rendered by
`explodebook.render`, as the widgets' figures are.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from explodebook import budget
from explodebook.render import draw_png
from explodebook.spec import RunSpec
from explodebook.sweep import Sweep, sweep

__all__ = ["Scrubber", "scrubber", "sweep_scrubber"]

# Past this many bytes of embedded PNGs a page gets slow to load; warn so the
# author lowers dpi or the number of frames rather than finding out online.
_WARN_BYTES = 8 * 1024 * 1024


def _png_size(png: bytes) -> tuple[int, int]:
    # Width and height are the first two fields of the IHDR chunk.
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


@dataclass(frozen=True, eq=False)
class Scrubber:
    """Pre-rendered frames behind a slider; displays as self-contained HTML.

    Build one with `scrubber` or `sweep_scrubber`. In a notebook or a
    Jupyter Book page it shows through ``_repr_html_``; `save` writes a
    standalone page. The HTML is a pure function of the frames and labels,
    so the same build produces the same page.

    Attributes:
        frames: PNG bytes of each frame (``N >= 1``).
        labels: what the slider shows for each frame, e.g.
            ``"init_scale = 1.5"``.
        title: optional heading above the image.
        start: index of the frame shown first (and without JavaScript).
        name: accessible name of the slider, e.g. the swept field.
    """

    frames: tuple[bytes, ...]
    labels: tuple[str, ...]
    title: str | None = None
    start: int = 0
    name: str = "frame"

    def __post_init__(self) -> None:
        object.__setattr__(self, "frames", tuple(self.frames))
        object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))
        if not self.frames:
            raise ValueError("a Scrubber needs at least one frame")
        for i, png in enumerate(self.frames):
            if not isinstance(png, bytes) or not png.startswith(b"\x89PNG\r\n\x1a\n"):
                raise ValueError(f"frames[{i}] is not PNG data")
        if len(self.labels) != len(self.frames):
            raise ValueError(
                f"{len(self.labels)} labels for {len(self.frames)} frames: give one per frame"
            )
        if not 0 <= self.start < len(self.frames):
            raise ValueError(
                f"start={self.start!r} is not allowed: expected 0 to {len(self.frames) - 1}"
            )

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def key(self) -> str:
        """A short hash of the content, the page id (the same in every build)."""
        digest = hashlib.sha256()
        header = json.dumps([self.title, self.start, self.name, self.labels])
        digest.update(header.encode())
        for png in self.frames:
            digest.update(len(png).to_bytes(8, "big"))
            digest.update(png)
        return digest.hexdigest()[:16]

    @property
    def nbytes(self) -> int:
        """Total size of the embedded PNGs."""
        return sum(len(png) for png in self.frames)

    def to_html(self) -> str:
        """The HTML fragment: image, controls and their inline script."""
        return _html(self)

    def _repr_html_(self) -> str:
        return _html(self)

    def _repr_png_(self) -> bytes:
        # For outputs that cannot run HTML (a PDF build): the start frame.
        return self.frames[self.start]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a standalone ``.html`` page (UTF-8) showing the scrubber."""
        title = html.escape(self.title or "explodebook scrubber")
        page = (
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{title}</title>\n</head>\n<body>\n{_html(self)}\n</body>\n</html>\n"
        )
        with open(path, "w", encoding="utf-8") as f:
            f.write(page)

    def __repr__(self) -> str:
        return (
            f"<Scrubber {len(self)} frames, {self.nbytes / 1024:.0f} KiB, "
            f"showing {self.labels[self.start]!r}>"
        )


def _script_json(value: Any) -> str:
    # JSON inside <script>: escape <, > and & so no label can close the
    # script element or open a comment.
    text = json.dumps(value, ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_CSS = (
    ".eb-scrubber{margin:.5em 0 1em}"
    ".eb-scrubber-title{font-weight:bold;margin-bottom:.25em}"
    ".eb-scrubber img{display:block;max-width:100%;height:auto}"
    ".eb-scrubber-controls{display:flex;flex-wrap:wrap;align-items:center;gap:.5em;"
    "margin-top:.25em}"
    ".eb-scrubber-controls input[type=range]{flex:1 1 12em;min-width:8em}"
    ".eb-scrubber-controls output{font-family:monospace;white-space:nowrap}"
)

# The root is found from the script itself (document.currentScript, its
# parent), so the same scrubber shown twice on one page gives two working
# copies. Where currentScript is unavailable (scripts run by eval), the
# first root with this key not yet initialised is taken: scripts run in
# document order. ES5 only, no globals.
_JS = """(function () {
  var key = %(key)s;
  var root = document.currentScript && document.currentScript.parentNode;
  if (!root || !root.getAttribute || root.getAttribute("data-eb-scrubber") !== key ||
      root.hasAttribute("data-eb-ready")) {
    root = null;
    var all = document.querySelectorAll("[data-eb-scrubber]");
    for (var k = 0; k < all.length; k++) {
      if (all[k].getAttribute("data-eb-scrubber") === key &&
          !all[k].hasAttribute("data-eb-ready")) { root = all[k]; break; }
    }
  }
  if (!root) { return; }
  root.setAttribute("data-eb-ready", "");
  var frames = %(frames)s;
  var labels = %(labels)s;
  var img = root.querySelector("img");
  var range = root.querySelector("input");
  var out = root.querySelector("output");
  frames[%(start)d] = img.getAttribute("src");
  function show(i) {
    i = Math.round(Number(i));
    if (!(i >= 0)) { i = 0; }
    if (i > frames.length - 1) { i = frames.length - 1; }
    range.value = String(i);
    img.setAttribute("src", frames[i]);
    img.setAttribute("alt", labels[i]);
    range.setAttribute("aria-valuetext", labels[i]);
    out.textContent = labels[i];
  }
  function onSlide() { show(range.value); }
  range.addEventListener("input", onSlide);
  range.addEventListener("change", onSlide);
  var buttons = root.querySelectorAll("button[data-step]");
  for (var b = 0; b < buttons.length; b++) {
    buttons[b].addEventListener("click", function () {
      show(Number(range.value) + Number(this.getAttribute("data-step")));
    });
  }
})();"""


def _html(s: Scrubber) -> str:
    key = s.key
    uris: list[str | None] = [
        "data:image/png;base64," + base64.b64encode(png).decode("ascii") for png in s.frames
    ]
    start_uri = uris[s.start]
    # The start frame is in the <img> (visible even without JavaScript); the
    # script reads it from there instead of embedding it a second time.
    uris[s.start] = None
    width, height = _png_size(s.frames[s.start])
    label = html.escape(s.labels[s.start])
    title = (
        f'<div class="eb-scrubber-title">{html.escape(s.title)}</div>\n' if s.title else ""
    )
    script = _JS % {
        "key": _script_json(key),
        "frames": _script_json(uris),
        "labels": _script_json(list(s.labels)),
        "start": s.start,
    }
    return (
        # As wide as the image, so the slider lines up under it.
        f'<div class="eb-scrubber" id="eb-scrubber-{key}" data-eb-scrubber="{key}" '
        f'style="max-width:{width}px">\n'
        f"<style>{_CSS}</style>\n"
        f"{title}"
        f'<img src="{start_uri}" alt="{label}" width="{width}" height="{height}">\n'
        '<div class="eb-scrubber-controls">\n'
        '<button type="button" data-step="-1" aria-label="previous">&lsaquo; Prev</button>\n'
        f'<input type="range" min="0" max="{len(s) - 1}" step="1" value="{s.start}" '
        f'aria-label="{html.escape(s.name)}" aria-valuetext="{label}">\n'
        '<button type="button" data-step="1" aria-label="next">Next &rsaquo;</button>\n'
        f'<output aria-live="polite">{label}</output>\n'
        "</div>\n"
        f"<script>\n{script}\n</script>\n"
        "</div>"
    )


def _passthrough(frame: Any) -> Any:
    return frame


def scrubber(
    frames: Sweep | Sequence[Any] | int,
    draw: Callable[..., Any] | None = None,
    labels: Sequence[str] | None = None,
    *,
    title: str | None = None,
    start: int | None = None,
    name: str | None = None,
    dpi: float = 80,
) -> Scrubber:
    """Render frames to PNG and put them behind a kernel-free slider.

    Args:
        frames: what to draw, one frame per slider position:

            * a `Sweep`: frame ``i`` calls ``draw(*sweep.frame(i))``, i.e.
              ``draw(trace)`` for one framework, ``draw(torch_trace,
              keras_trace)`` for two;
            * an ``int`` ``N``: calls ``draw(i)`` for ``i = 0..N-1``;
            * a sequence: calls ``draw(item)`` for each item; with
              ``draw=None`` the items must be matplotlib Figures (or Axes)
              already drawn.
        draw: returns a Figure or an Axes (or draws into one new pyplot
            figure and returns None). Every figure it opens is closed once
            rendered, and so are figures passed as frames.
        labels: one per frame; default ``"<field> = <value>"`` for a sweep,
            ``"1 / N"``, ``"2 / N"``, ... otherwise.
        title: heading above the image.
        start: frame shown first; default the sweep's base value (when it is
            among the values), else 0.
        name: accessible name of the slider; default the sweep's field.
        dpi: resolution of the PNGs. Every frame is embedded in the page,
            so keep it modest.

    Returns:
        a `Scrubber`.
    """
    if isinstance(frames, Sweep):
        if draw is None:
            raise ValueError("draw is required for a Sweep: a function of its traces")
        calls = [frames.frame(i) for i in range(len(frames))]
        default_labels = frames.labels
        if start is None:
            start = frames.base_index or 0
        name = name or frames.field
    else:
        if isinstance(frames, bool) or isinstance(frames, (str, bytes)):
            raise TypeError(
                f"frames must be a Sweep, an int or a sequence, not {type(frames).__name__}"
            )
        if isinstance(frames, int):
            if frames < 1:
                raise ValueError(f"frames={frames!r}: need at least one frame")
            items: list[Any] = list(range(frames))
        else:
            items = list(frames)
        if not items:
            raise ValueError("frames is empty: need at least one frame")
        calls = [(item,) for item in items]
        default_labels = [f"{i + 1} / {len(items)}" for i in range(len(items))]
        draw = draw or _passthrough
    if labels is not None:
        labels = list(labels)
        if len(labels) != len(calls):
            raise ValueError(f"{len(labels)} labels for {len(calls)} frames: give one per frame")
    else:
        labels = default_labels

    pngs = []
    for i, args in enumerate(calls):
        try:
            pngs.append(draw_png(draw, args, dpi))
        except Exception as e:
            if hasattr(e, "add_note"):
                e.add_note(f"while drawing frame {i} ({labels[i]}) of a scrubber")
            raise
    result = Scrubber(tuple(pngs), tuple(labels), title, start or 0, name or "frame")
    if result.nbytes > _WARN_BYTES:
        warnings.warn(
            f"the scrubber embeds {result.nbytes / 2**20:.1f} MiB of PNGs in the page; "
            "lower dpi or use fewer frames",
            stacklevel=2,
        )
    return result


def sweep_scrubber(
    base: RunSpec,
    field: str,
    values: Iterable[Any],
    draw: Callable[..., Any],
    framework: str | Sequence[str] = "torch",
    *,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    start: int | None = None,
    dpi: float = 80,
    cache: bool = True,
    max_seconds: float | None = budget.DEFAULT,
    progress: bool | None = None,
) -> Scrubber:
    """`explodebook.sweep.sweep` then `scrubber`: one slider position per value of ``field``.

    Args:
        base, field, values, framework, cache, max_seconds, progress: as
            in `explodebook.sweep.sweep`.
        draw: called with the traces of one value, one per framework
            (``draw(trace)`` or ``draw(torch_trace, keras_trace)``).
        labels, title, start, dpi: as in `scrubber`.

    Returns:
        a `Scrubber`.
    """
    result = sweep(
        base, field, values, framework, cache=cache, max_seconds=max_seconds, progress=progress
    )
    return scrubber(result, draw, labels, title=title, start=start, dpi=dpi)
