"""`explodebook.sweep`, `explodebook.scrubber` and `explodebook.cache`: grids of runs, and a slider
that works in static HTML, checked in a real headless browser."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("MPLBACKEND", "agg")

import matplotlib  # noqa: E402

matplotlib.use("agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from explodebook import cache  # noqa: E402
from explodebook.spec import RunSpec, SpecError  # noqa: E402
from explodebook.scrubber import Scrubber, scrubber, sweep_scrubber  # noqa: E402
from explodebook.sweep import Sweep, sweep  # noqa: E402
from explodebook.trace import Trace  # noqa: E402

TINY = RunSpec(steps=20, width=8)


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def _draw_index(i: int) -> Any:
    """A tiny, distinct figure per index."""
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, i + 1])
    ax.set_title(f"frame {i}")
    return fig


def _tiny_scrubber(n: int = 4, title: str | None = "test", **kwargs: Any) -> Scrubber:
    return scrubber(n, _draw_index, title=title, dpi=40, **kwargs)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# -- sweep and cache -----------------------------------------------------------------


def test_sweep_runs_one_spec_per_value() -> None:
    values = [0.5, 1.0, 2.0]
    result = sweep(TINY, "init_scale", values)
    assert isinstance(result, Sweep) and len(result) == 3
    assert result.frameworks == ("torch",)
    traces = result.traces["torch"]
    assert [t.spec.init_scale for t in traces] == values
    for trace, value in zip(traces, values, strict=True):
        assert trace.framework == "torch"
        assert trace.spec == TINY.replace(init_scale=value)
    assert result.labels == ["init_scale = 0.5", "init_scale = 1", "init_scale = 2"]
    assert result.base_index == 1  # TINY.init_scale is 1.0


def test_cache_returns_the_same_trace_and_clear_empties_it() -> None:
    first = sweep(TINY, "learning_rate", [0.01, 0.001]).traces["torch"]
    again = sweep(TINY, "learning_rate", [0.01, 0.001]).traces["torch"]
    assert all(a is b for a, b in zip(first, again, strict=True))
    assert cache.info() == cache.CacheInfo(hits=2, misses=2, maxsize=cache.MAX_TRACES, currsize=2)
    assert cache.cached_run(TINY.replace(learning_rate=0.01)) is first[0]

    cache.clear()
    assert cache.info().currsize == 0
    rerun = cache.cached_run(TINY.replace(learning_rate=0.01))
    assert rerun is not first[0] and rerun.equals(first[0])  # same numbers, new object


def test_cached_traces_are_read_only() -> None:
    trace = cache.cached_run(TINY)
    with pytest.raises(ValueError, match="read-only"):
        trace.loss[0] = 0.0


def test_uncached_sweep_bypasses_the_cache() -> None:
    cached = cache.cached_run(TINY)
    fresh = sweep(TINY, "seed", [TINY.seed], cache=False).traces["torch"][0]
    assert fresh is not cached and fresh.equals(cached)
    assert cache.info().currsize == 1


def test_cache_evicts_the_least_recently_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "MAX_TRACES", 2)
    a, b, c = (TINY.replace(seed=s) for s in (1, 2, 3))
    trace_a = cache.cached_run(a)
    cache.cached_run(b)
    assert cache.cached_run(a) is trace_a  # a is now the most recent
    cache.cached_run(c)  # evicts b
    assert cache.info().currsize == 2
    assert cache.cached_run(a) is trace_a
    misses = cache.info().misses
    cache.cached_run(b)
    assert cache.info().misses == misses + 1


def test_sweep_over_two_frameworks_keeps_their_order(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in Keras backend (relabelled torch traces), so this test does
    # not import TensorFlow; the real backends are tested elsewhere.
    from explodebook import backends
    from explodebook.backends import torch as torch_backend

    fake_keras = types.SimpleNamespace(
        run=lambda spec: dataclasses.replace(torch_backend.run(spec), framework="keras")
    )
    real_get = backends.get
    monkeypatch.setattr(
        backends, "get", lambda name: fake_keras if name == "keras" else real_get(name)
    )
    result = sweep(TINY, "depth", [1, 2], framework=("keras", "torch"))
    assert result.frameworks == ("keras", "torch")
    keras_trace, torch_trace = result.frame(1)
    assert (keras_trace.framework, torch_trace.framework) == ("keras", "torch")
    assert keras_trace.spec.depth == torch_trace.spec.depth == 2


def test_invalid_field_raises_a_clear_error() -> None:
    with pytest.raises(SpecError, match="field='init_scal' is not a RunSpec field.*init_scale"):
        sweep(TINY, "init_scal", [1.0])


def test_invalid_value_names_the_value_before_anything_runs() -> None:
    with pytest.raises(SpecError, match=r"values\[1\]=-1.0 is invalid: RunSpec.init_scale"):
        sweep(TINY, "init_scale", [1.0, -1.0])
    assert cache.info().misses == 0  # validated first, nothing ran


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"values": []}, ValueError, "empty"),
        ({"values": "relu"}, TypeError, "string"),
        ({"values": [1.0], "framework": "jax"}, ValueError, "framework='jax'"),
    ],
)
def test_sweep_argument_errors(kwargs: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        sweep(TINY, "init_scale", **kwargs)


# -- scrubber HTML ---------------------------------------------------------------------


def test_scrubber_html_embeds_each_frame_once_and_nothing_external() -> None:
    s = _tiny_scrubber(5)
    page = s._repr_html_()
    assert page.count("data:image/png;base64,") == 5
    for png in s.frames:
        assert base64.b64encode(png).decode("ascii") in page
    # No URL of any kind ("://" cannot occur in base64), and no "http"
    # outside the image data.
    assert "://" not in page
    assert "http" not in re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert 'type="range"' in page and 'max="4"' in page
    assert "require" not in page and "<link" not in page


def test_scrubber_closes_its_figures() -> None:
    before = plt.get_fignums()
    _tiny_scrubber(3)
    figures = [plt.figure() for _ in range(2)]
    scrubber(figures, dpi=30)  # ready-made figures are consumed too
    assert plt.get_fignums() == before


def test_scrubber_accepts_axes_and_pyplot_drawings() -> None:
    def returns_axes(i: int) -> Any:
        return plt.subplots(figsize=(1, 1))[1]

    def returns_nothing(i: int) -> None:
        plt.figure(figsize=(1, 1))
        plt.plot([i, 0])

    assert len(scrubber(2, returns_axes, dpi=20)) == 2
    assert len(scrubber(2, returns_nothing, dpi=20)) == 2
    with pytest.raises(TypeError, match="draw must return"):
        scrubber(1, lambda i: 42, dpi=20)
    assert plt.get_fignums() == []


def test_scrubber_labels_and_escaping() -> None:
    s = _tiny_scrubber(2, labels=["a </script><b>", "b & c"])
    page = s.to_html()
    assert page.count("</script>") == 1  # only the real end tag
    assert "<b>" not in page and "a &lt;/script&gt;&lt;b&gt;" in page
    with pytest.raises(ValueError, match="3 labels for 2 frames"):
        _tiny_scrubber(2, labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="start=5"):
        _tiny_scrubber(2, start=5)


def test_scrubber_ids_are_unique_across_scrubbers() -> None:
    first, second = _tiny_scrubber(3), _tiny_scrubber(3, title="another")
    ids = re.findall(r'id="([^"]+)"', first.to_html() + second.to_html())
    assert len(ids) == 2 and len(set(ids)) == 2


def test_scrubber_html_is_deterministic_across_processes() -> None:
    page = _tiny_scrubber(3).to_html()
    assert _tiny_scrubber(3).to_html() == page
    code = (
        "import hashlib, sys; sys.path.insert(0, 'tests'); import test_sweep as t; "
        "print(hashlib.sha256(t._tiny_scrubber(3).to_html().encode()).hexdigest())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "MPLBACKEND": "agg"},
    ).stdout.split()[-1]
    assert out == hashlib.sha256(page.encode()).hexdigest()


def test_sweep_scrubber_labels_frames_and_starts_at_the_base_value(tmp_path: Path) -> None:
    def draw(trace: Trace) -> Any:
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.semilogy(trace.grad_norm_total)
        return fig

    s = sweep_scrubber(TINY, "init_scale", [0.5, 1.0, 2.0], draw, dpi=30)
    assert s.labels == ("init_scale = 0.5", "init_scale = 1", "init_scale = 2")
    assert s.start == 1 and s.name == "init_scale"
    page = s.to_html()
    assert 'value="1"' in page and '<output aria-live="polite">init_scale = 1<' in page
    assert s._repr_png_() == s.frames[1]
    path = tmp_path / "scrubber.html"
    s.save(path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and s.to_html() in text


# -- the script, run for real ----------------------------------------------------------


@pytest.fixture(scope="module")
def page(browser: Any) -> Iterator[Any]:
    """A page of the shared headless browser."""
    page = browser.new_page()
    yield page
    page.close()


def _src(page: Any, n: int = 0) -> str:
    return page.eval_on_selector_all(".eb-scrubber img", f"els => els[{n}].getAttribute('src')")


def _slide(page: Any, n: int, value: int) -> None:
    page.eval_on_selector_all(
        ".eb-scrubber input[type=range]",
        f"""els => {{
            els[{n}].value = '{value}';
            els[{n}].dispatchEvent(new Event('input', {{bubbles: true}}));
        }}""",
    )


def test_browser_slider_switches_the_image(page: Any) -> None:
    s = _tiny_scrubber(4)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.set_content(s.to_html())
    assert _src(page) == _data_uri(s.frames[0])
    for value in (2, 3, 0, 1):
        _slide(page, 0, value)
        assert _src(page) == _data_uri(s.frames[value])
        assert page.text_content(".eb-scrubber output") == s.labels[value]
    assert page.get_attribute("input[type=range]", "aria-valuetext") == s.labels[1]
    assert not [url for url in requests if not url.startswith("data:")]


def test_browser_buttons_and_keyboard(page: Any, tmp_path: Path) -> None:
    s = _tiny_scrubber(3, start=1)
    path = tmp_path / "s.html"
    s.save(path)
    page.goto(path.as_uri())
    assert _src(page) == _data_uri(s.frames[1])
    page.click("text=Next")
    assert _src(page) == _data_uri(s.frames[2])
    page.click("text=Next")  # stays on the last frame
    assert _src(page) == _data_uri(s.frames[2])
    page.click("text=Prev")
    page.click("text=Prev")
    assert _src(page) == _data_uri(s.frames[0])
    page.focus("input[type=range]")
    page.keyboard.press("ArrowRight")
    assert _src(page) == _data_uri(s.frames[1])
    page.keyboard.press("End")
    assert _src(page) == _data_uri(s.frames[2])


def test_browser_scrubbers_on_one_page_do_not_interfere(page: Any) -> None:
    a, b = _tiny_scrubber(3), _tiny_scrubber(3, title="b")
    # b twice: identical HTML (same id) must still give two working copies.
    page.set_content(a.to_html() + b.to_html() + b.to_html())
    _slide(page, 1, 2)
    assert [_src(page, n) for n in range(3)] == [
        _data_uri(a.frames[0]),
        _data_uri(b.frames[2]),
        _data_uri(b.frames[0]),
    ]
    _slide(page, 2, 1)
    _slide(page, 0, 1)
    assert [_src(page, n) for n in range(3)] == [
        _data_uri(a.frames[1]),
        _data_uri(b.frames[2]),
        _data_uri(b.frames[1]),
    ]


def test_browser_scripts_run_by_eval_still_find_their_scrubber(page: Any) -> None:
    # Classic Jupyter inserts outputs with innerHTML and evals the scripts:
    # document.currentScript is null then.
    s = _tiny_scrubber(3)
    page.set_content("<div id=host></div>")
    page.evaluate(
        """html => {
            const host = document.getElementById('host');
            host.innerHTML = html + html;
            for (const script of host.querySelectorAll('script')) {
                (0, eval)(script.textContent);
            }
        }""",
        s.to_html(),
    )
    _slide(page, 1, 2)
    _slide(page, 0, 1)
    assert [_src(page, n) for n in range(2)] == [_data_uri(s.frames[1]), _data_uri(s.frames[2])]


# Without a browser, node runs the same script against a minimal DOM stand-in,
# so CI machines without Chromium still execute the JavaScript.
_NODE_DOM = r"""
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
function element(tag, attrs) {
  return {
    tag, attrs: Object.assign({}, attrs), listeners: {}, value: attrs.value,
    getAttribute(k) { return k in this.attrs ? this.attrs[k] : null; },
    setAttribute(k, v) { this.attrs[k] = String(v); },
    hasAttribute(k) { return k in this.attrs; },
    addEventListener(type, f) { (this.listeners[type] = this.listeners[type] || []).push(f); },
    fire(type) { (this.listeners[type] || []).forEach(f => f.call(this, {})); },
  };
}
const img = element('img', {src: input.src});
const range = element('input', {value: String(input.start)});
const out = element('output', {});
const buttons = [element('button', {'data-step': '-1'}), element('button', {'data-step': '1'})];
const root = element('div', {'data-eb-scrubber': input.key});
root.querySelector = sel => ({img, input: range, output: out})[sel];
root.querySelectorAll = sel => buttons;
globalThis.document = {currentScript: {parentNode: root}, querySelectorAll: () => [root]};
new Function(input.script)();
const seen = [];
range.value = '2'; range.fire('input'); seen.push([img.attrs.src, out.textContent]);
buttons[0].fire('click'); seen.push([img.attrs.src, out.textContent]);
buttons[0].fire('click'); buttons[0].fire('click'); seen.push([img.attrs.src, out.textContent]);
console.log(JSON.stringify(seen));
"""


def test_script_in_node_with_a_minimal_dom() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    s = _tiny_scrubber(3)
    html = s.to_html()
    payload = {
        "script": re.search(r"<script>\n(.*)\n</script>", html, re.S).group(1),  # type: ignore[union-attr]
        "src": re.search(r'<img src="([^"]+)"', html).group(1),  # type: ignore[union-attr]
        "key": s.key,
        "start": s.start,
    }
    result = subprocess.run(
        [node, "-e", _NODE_DOM], input=json.dumps(payload), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout)
    expected = [2, 1, 0]  # slide to 2, Prev, Prev twice (clamped at 0)
    assert seen == [[_data_uri(s.frames[i]), s.labels[i]] for i in expected]


def test_frames_are_small_png() -> None:
    s = _tiny_scrubber(2)
    assert all(png.startswith(b"\x89PNG") for png in s.frames)
    assert np.mean([len(png) for png in s.frames]) < 20_000
