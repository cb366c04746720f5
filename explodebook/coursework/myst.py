"""Reading a chapter's MyST Markdown for the assignment notebooks.

The chapters are the one source of truth for the exercises: this module
finds each ``exercise`` directive and the ``solution`` that follows it, and
turns the chapter's MyST-only syntax (roles, labels, glue) into Markdown
that plain JupyterLab and Colab render.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Exercise",
    "Segment",
    "split_exercises",
    "python_blocks",
    "glued_values",
    "cite_labels",
    "to_jupyter_markdown",
]

# A colon fence of 3 or more colons opening a directive, e.g. ":::{exercise}"
# or "::::{solution} label"; it closes on a line of the same colons.
_DIRECTIVE = re.compile(r"^(?P<fence>:{3,})\{(?P<name>[\w:-]+)\}[ \t]*(?P<arg>.*)$")
_OPTION = re.compile(r"^:(?P<key>[\w-]+):[ \t]*(?P<value>.*)$")
_PYTHON_BLOCK = re.compile(r"^```(?:python|ipython3?|py)[ \t]*\n(?P<code>.*?)^```[ \t]*$", re.M | re.S)


@dataclass(frozen=True)
class Exercise:
    """One exercise of a chapter with its solution, as written in the chapter.

    Attributes:
        label: the exercise's ``:label:`` (e.g. ``"ch1-ex-growth"``).
        prompt: the exercise's body, MyST Markdown.
        solution: the body of the ``solution`` directive that names the
            label, MyST Markdown (empty if the chapter has none).
    """

    label: str
    prompt: str
    solution: str

    @property
    def solution_code(self) -> list[str]:
        """The solution's fenced Python code blocks, in order."""
        return python_blocks(self.solution)


@dataclass(frozen=True)
class Segment:
    """A piece of a Markdown cell: prose, or one exercise with its solution."""

    text: str = ""
    exercise: Exercise | None = None


def _read_directive(lines: list[str], start: int) -> tuple[str, str, dict[str, str], str, int]:
    """Parse the directive opening at ``lines[start]``.

    Returns:
        ``(name, argument, options, body, index after the closing fence)``.
    """
    head = _DIRECTIVE.match(lines[start])
    assert head is not None
    fence = head["fence"]
    i = start + 1
    options: dict[str, str] = {}
    while i < len(lines) and (option := _OPTION.match(lines[i])):
        options[option["key"]] = option["value"].strip()
        i += 1
    body: list[str] = []
    while i < len(lines) and lines[i].rstrip() != fence:
        body.append(lines[i])
        i += 1
    if i == len(lines):
        raise ValueError(f"directive {{{head['name']}}} opened by {fence!r} is never closed")
    return head["name"], head["arg"].strip(), options, "\n".join(body).strip(), i + 1


def split_exercises(markdown: str) -> list[Segment]:
    """Split a Markdown cell into prose and exercises.

    Each ``exercise`` directive with a ``:label:`` becomes one segment, with
    the ``solution`` directive naming that label attached to it (wherever it
    follows). Everything else stays prose, in order.

    Raises:
        ValueError: an exercise without a label, or a solution naming no
            exercise of this cell.
    """
    lines = markdown.splitlines()
    segments: list[Segment] = []
    prose: list[str] = []
    exercises: dict[str, tuple[int, str]] = {}
    i = 0
    while i < len(lines):
        head = _DIRECTIVE.match(lines[i])
        if head is None or head["name"] not in ("exercise", "solution"):
            prose.append(lines[i])
            i += 1
            continue
        name, arg, options, body, i = _read_directive(lines, i)
        if name == "exercise":
            label = options.get("label")
            if not label:
                raise ValueError(f"an exercise without a :label: ({body[:60]!r}...)")
            if "\n".join(prose).strip():
                segments.append(Segment(text="\n".join(prose).strip()))
            prose = []
            exercises[label] = (len(segments), body)
            segments.append(Segment(exercise=Exercise(label, body, "")))
        else:
            if arg not in exercises:
                raise ValueError(
                    f"solution for {arg!r}, but no exercise with that label precedes it"
                )
            index, prompt = exercises[arg]
            segments[index] = Segment(exercise=Exercise(arg, prompt, body))
    if "\n".join(prose).strip():
        segments.append(Segment(text="\n".join(prose).strip()))
    return segments


def python_blocks(markdown: str) -> list[str]:
    """The fenced Python code blocks of a Markdown text, in order."""
    return [m["code"].rstrip("\n") for m in _PYTHON_BLOCK.finditer(markdown)]


def glued_values(glue_json: str | Path) -> dict[str, str]:
    """The values a built chapter glued, as text, from MyST-NB's ``.glue.json``.

    ``jupyter-book build`` writes ``_build/jupyter_execute/<chapter>.glue.json``
    with every ``glue(name, value)`` of the executed chapter.
    """
    path = Path(glue_json)
    if not path.exists():
        return {}
    values: dict[str, str] = {}
    for name, output in json.loads(path.read_text()).items():
        data = output.get("data", {})
        values[name] = data.get("text/markdown") or data.get("text/plain", "")
    return values


def cite_labels(bibfile: str | Path) -> dict[str, str]:
    """Author–year labels (``"Pascanu et al. 2013"``) for the keys of a BibTeX file."""
    path = Path(bibfile)
    if not path.exists():
        return {}
    labels: dict[str, str] = {}
    for entry in re.split(r"\n(?=@)", "\n" + path.read_text()):
        key = re.match(r"\s*@\w+\{([^,\s]+),", entry)
        if key is None:
            continue
        author = re.search(r"\bauthor\s*=\s*[{\"](.+?)[}\"]\s*,\s*\n", entry, re.S)
        year = re.search(r"\byear\s*=\s*[{\"]?(\d{4})", entry)
        if author is None or year is None:
            continue
        names = [a.strip() for a in re.sub(r"\s+", " ", author[1]).split(" and ")]
        surnames = [n.split(",")[0] if "," in n else n.split(" ")[-1] for n in names]
        surnames = [s.strip("{} ") for s in surnames]
        who = surnames[0] if len(surnames) == 1 else (
            f"{surnames[0]} and {surnames[1]}" if len(surnames) == 2 else f"{surnames[0]} et al."
        )
        labels[key[1]] = f"{who} {year[1]}"
    return labels


def _format_glue(value: str, spec: str) -> str:
    """A glued value as ``{glue:text}`name:spec``` renders it."""
    if not spec:
        return value
    try:
        return format(float(value), spec)
    except ValueError:
        return value


def to_jupyter_markdown(
    markdown: str,
    glue: Mapping[str, str] | None = None,
    citations: Mapping[str, str] | None = None,
    evals: Mapping[str, str] | None = None,
) -> str:
    """MyST Markdown as plain Jupyter Markdown.

    - ``{eval}`expr``` becomes the text the book shows for it when
      ``evals`` has it (the built book's numbers, from the same seeded
      run), else ``expr`` in code font;
    - ``{glue:text}`name:.2f``` and ``{glue:md}`name``` become the glued
      value when ``glue`` has it (the built book's numbers), else ``name``
      in code font; a ``{glue:md}`` block directive likewise;
    - ``{cite}`a,b``` becomes "(Author Year; Author Year)";
    - ``{ref}`text <label>``` becomes *text*; other roles keep their text;
    - ``(label)=`` targets are dropped; ``dropdown``/``admonition``
      directives become a bold title and a quote.
    """
    glue = glue or {}
    citations = citations or {}
    evals = evals or {}

    def glue_role(m: re.Match[str]) -> str:
        name, _, spec = m["content"].partition(":")
        return _format_glue(glue[name], spec) if name in glue else f"`{name}`"

    def cite(m: re.Match[str]) -> str:
        keys = [k.strip() for k in m["content"].split(",")]
        return "(" + "; ".join(citations.get(k, k) for k in keys) + ")"

    def ref(m: re.Match[str]) -> str:
        text = re.sub(r"\s*<[^>]*>$", "", m["content"])
        return f"*{text}*"

    text = re.sub(r"^```\{glue:md\}\s*(\S+)\s*\n(?::[^\n]*\n)*```[ \t]*$",
                  lambda m: glue.get(m[1], f"`{m[1]}`"), markdown, flags=re.M)
    text = re.sub(r"\{eval\}`(?P<content>[^`]+)`", lambda m: evals.get(m["content"], f"`{m['content']}`"), text)
    text = re.sub(r"\{glue:(?:text|md)\}`(?P<content>[^`]+)`", glue_role, text)
    text = re.sub(r"\{cite(?::\w+)?\}`(?P<content>[^`]+)`", cite, text)
    text = re.sub(r"\{(?:ref|numref|doc)\}`(?P<content>[^`]+)`", ref, text)
    text = re.sub(r"\{(?:math)\}`(?P<content>[^`]+)`", r"$\g<content>$", text)
    text = re.sub(r"\{[\w:-]+\}`(?P<content>[^`]+)`", r"`\g<content>`", text)
    text = re.sub(r"^\([\w-]+\)=[ \t]*\n", "", text, flags=re.M)

    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        head = _DIRECTIVE.match(lines[i])
        if head is None or head["name"] not in ("dropdown", "admonition", "note", "tip", "warning"):
            out.append(lines[i])
            i += 1
            continue
        name, arg, _, body, i = _read_directive(lines, i)
        title = arg or name.capitalize()
        out.append(f"> **{title}**\n>")
        out.extend(f"> {line}".rstrip() for line in body.splitlines())
    return "\n".join(out)
