"""A `explodebook.diagnose.Diagnosis` as a reader sees it: Markdown and HTML tables.

The checks in `explodebook.diagnose` decide; this module only presents
what they decided, one row per sign: its title, whether it is subtle or
confirming, whether it is present, from which step, and the evidence.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from explodebook.diagnose import Diagnosis, Sign, Thresholds
    from explodebook.trace import Trace

__all__ = ["diagnosis_markdown", "diagnosis_html", "sign_table", "verdicts", "tests_table"]

# The colour of each verdict in HTML (Okabe-Ito: vermillion, orange, green).
_COLOURS = {"exploding": "#D55E00", "suspect": "#E69F00", "healthy": "#009E73"}


def _kind(sign: Sign) -> str:
    return "confirming" if sign.conclusive else "subtle"


def _mark(sign: Sign) -> str:
    return "✓" if sign.present else "–"


def _step(sign: Sign) -> str:
    return "" if sign.first_step is None else str(sign.first_step)


def diagnosis_markdown(diagnosis: Diagnosis) -> str:
    """The summary, then a Markdown table with one row per sign."""
    lines = [
        f"**{diagnosis.verdict}**: {diagnosis.summary}",
        "",
        "| sign | kind | present | first step | evidence |",
        "|---|---|:-:|--:|---|",
    ]
    for s in diagnosis.signs:
        evidence = s.evidence.replace("|", "\\|")
        lines.append(f"| {s.title} | {_kind(s)} | {_mark(s)} | {_step(s)} | {evidence} |")
    return "\n".join(lines)


def diagnosis_html(diagnosis: Diagnosis) -> str:
    """The summary, its verdict in colour, then an HTML table with one row per sign.

    Present signs are bold, absent ones grey. Every text is escaped.
    """
    rows = []
    for s in diagnosis.signs:
        weight = "font-weight:bold;" if s.present else "color:#666;"
        rows.append(
            f'<tr style="{weight}">'
            f'<td style="text-align:left">{html.escape(s.title)}</td>'
            f'<td style="text-align:left">{_kind(s)}</td>'
            f'<td style="text-align:center">{_mark(s)}</td>'
            f'<td style="text-align:right">{_step(s)}</td>'
            f'<td style="text-align:left">{html.escape(s.evidence)}</td></tr>'
        )
    colour = _COLOURS[diagnosis.verdict]
    return (
        '<div class="explodebook-diagnosis">'
        f'<p><strong style="color:{colour}">{html.escape(diagnosis.verdict)}'
        f"</strong>: {html.escape(diagnosis.summary)}</p>"
        "<table><thead><tr>"
        '<th style="text-align:left">sign</th><th style="text-align:left">kind</th>'
        "<th>present</th><th>first step</th>"
        '<th style="text-align:left">evidence</th>'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def sign_table(runs: Mapping[Any, Trace]) -> pd.DataFrame:
    """The six signs (rows, then the verdict) by run (columns).

    Args:
        runs: traces by column name (a tuple name gives a column MultiIndex).

    Returns:
        a table whose cells are "✓ (step k)" for a sign first seen at step
        k, "✓" for one without a step, "–" for an absent one.
    """
    import pandas as pd

    from explodebook.diagnose import diagnose

    columns, index = {}, []
    for name, trace in runs.items():
        diagnosis = diagnose(trace)
        cells = ["–" if not s.present else "✓" if s.first_step is None else f"✓ (step {s.first_step})"
                 for s in diagnosis]
        columns[name] = [*cells, diagnosis.verdict]
        index = [s.title for s in diagnosis] + ["verdict"]
    return pd.DataFrame(columns, index=index)


def verdicts(*traces: Trace) -> str:
    """The verdicts of some runs, joined: e.g. ``"exploding / exploding"``."""
    from explodebook.diagnose import diagnose

    return " / ".join(diagnose(trace).verdict for trace in traces)


def tests_table(thresholds: Thresholds | None = None) -> pd.DataFrame:
    """The test `explodebook.diagnose.diagnose` applies for each sign, in words.

    Args:
        thresholds: the numbers to state (default: ``Thresholds()``).

    Returns:
        a table with one row per sign, indexed by the sign's title, whose
        columns give its kind (subtle or confirming) and its test, with the
        threshold values filled in.
    """
    import pandas as pd

    from explodebook.diagnose import Thresholds
    from explodebook.signs import SIGNS

    t = thresholds or Thresholds()
    names = ("poor_loss", "unstable_loss", "nan_loss", "growing_weights", "nan_weights",
             "grad_norm_above_1")
    assert tuple(entry.name for entry in SIGNS) == names, "the signs changed: update this table"
    tests = [
        f"the median loss of the last {t.window} steps is at least "
        f"{t.traction_fraction:g}× that of the first {t.window}, or the run diverged",
        f"the median update multiplies or divides the loss by {t.unstable_ratio:g} or more, "
        f"or at least {t.jump_fraction:.0%} of updates multiply it by {t.jump_ratio:g} or more",
        "a loss value is NaN or infinite",
        f"a layer's weight norm reaches {t.weight_growth:g}× its value at step 0",
        "a layer's weight norm is NaN or infinite",
        f"every layer's gradient norm exceeds {t.grad_norm:g} in at least "
        f"{t.grad_fraction:.0%} of the steps (of at least {t.min_steps})",
    ]
    index = [entry.title.format(grad_norm=t.grad_norm) for entry in SIGNS]
    return pd.DataFrame({"kind": ["subtle"] * 3 + ["confirming"] * 3, "the book's test": tests},
                        index=index)
