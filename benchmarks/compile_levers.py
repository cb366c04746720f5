"""Two untried speed levers of the PyTorch backend, measured against its eager step: torch.compile and torch.func.vmap.

Run from the repository root with ``.venv/bin/python benchmarks/compile_levers.py``
(``--quick`` for a shorter version, ``--repeats N``); writes
``benchmarks/compile_results.md`` (``--out`` to choose) and prints it. Not
part of the tests. Every timing is a ratio against the eager loop measured
in the same process (or in sibling processes started the same way), the
variants alternating inside each repeat, one PyTorch thread as in the
backend.

1. ``torch.compile`` of one run's training step, on the book's widget
   specs that miss the 1 s line (chapter 6a's LSTM, chapter 9's simple RNN)
   and the classic MLP. The loop is the backend's (`explodebook.backends.torch`:
   same model from ``build``, optimizer from ``make_optimizer``, batches,
   ``LayerRecorder``); only the step changes: the forward and loss compiled
   (``torch.compile`` of ``loss_fn(model(x), y)``, inductor or ``aot_eager``;
   by default dynamo breaks the graph at ``nn.RNN``/``nn.LSTM`` and runs
   them eagerly, so both also with ``torch._dynamo.config.allow_rnn``,
   which traces them), or the whole step (zero grads, forward, backward, the record's copy and
   ``optimizer.step``). Measured: (a) a fresh process with an empty
   inductor cache (``TORCHINDUCTOR_CACHE_DIR``), first run including
   compilation; (b) a fresh process with that cache warm, what a reader's
   first widget move in a new kernel pays; (c) the per-step time once
   compiled; (d) the first run of a new model instance and of a new shape
   in the same process, what a later widget move pays. Exactness: the loss
   and gradient-norm traces against the backend's own eager run.
2. ``torch.func``: K = 20 runs of the classic MLP that differ only in
   ``learning_rate`` (a row of the 20x20 grid of
   ``benchmarks/sweep_parallel.py``) or only in ``init_scale``, trained as
   one vmapped run (``functional_call`` + ``grad_and_value`` over K stacked
   copies of the weights, SGD with momentum written out) against the K
   backend runs one after the other and against K runs of the eager loop.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "compile_results.md"

_T0 = time.perf_counter()
import numpy as np
import torch
import torch._dynamo
from torch import nn

from explodebook.backends import torch as backend
from explodebook.backends.torch_nets import build, layer_weights
from explodebook.data import batch_indices, dataset_for
from explodebook.frameworks import torch_threads
from explodebook.spec import RunSpec
from explodebook.trace import Trace

IMPORT_SECONDS = time.perf_counter() - _T0

# The benchmark compiles each variant's code for many specs: past dynamo's
# default of 8 versions of one code object it would fall back to eager
# silently. Raised so that every compiled variant stays compiled.
torch._dynamo.config.cache_size_limit = 64
_CODES: dict[tuple[str, str], types.CodeType] = {}


def own_code(function: types.FunctionType, variant: str) -> types.FunctionType:
    """``function`` with a code object of its own per variant.

    Dynamo caches compiled code per code object and, since new model
    instances are inlined rather than guarded by identity, would hand one
    variant's compiled graph to another (its allow_rnn setting unread).
    Runners of the same variant share their code, as a backend would.
    """
    key = (function.__code__.co_name, variant)
    if key not in _CODES:
        _CODES[key] = function.__code__.replace(co_name=f"{key[0]}_{len(_CODES)}")
    return types.FunctionType(
        _CODES[key], function.__globals__, function.__name__, None, function.__closure__
    )

_RNN_09 = RunSpec(model="rnn", cell="simple", task="adding", seq_len=8, width=32,
                  init="orthogonal", init_scale=1.0, learning_rate=0.1, momentum=0.9,
                  batch_size=32, steps=800)  # fmt: skip
#: The widget set-ups that miss the 1 s line (06a's start, 09's learning-rate
#: move to 0.01: both train all their steps) and the classic MLP on the
#: scaled target (trains 1600 steps); then two that explode, for exactness
#: (09's baseline at step 40, RunSpec() at step 8): cheap, timed all the same.
CASES = {
    "lstm 1x32, T=20, 400 steps, adam (06a)": RunSpec(
        model="rnn", cell="lstm", width=32, init="xavier", optimizer="adam",
        learning_rate=0.01, steps=400, seq_len=20),
    "rnn simple 1x32, T=8, 800 steps, lr 0.01 (09 move)": _RNN_09.replace(learning_rate=0.01),
    "mlp 1x25 relu, 1600 steps, scaled target": RunSpec(task="regression-scaled"),
    "rnn simple, 09's baseline lr 0.1 (explodes)": _RNN_09,
    "mlp 1x25 relu, RunSpec() (explodes)": RunSpec(),
}  # fmt: skip
#: The cases measured in fresh processes, (a) and (b).
CHILD_CASES = list(CASES)[:3]

#: How a widget move changes the model's shape, per case (for (d)).
NEW_SHAPE = {"rnn": {"seq_len": 40}, "mlp": {"width": 50}}

#: variant -> (what is compiled, backend, allow_rnn)
VARIANTS: dict[str, tuple[str, str | None, bool]] = {
    "eager (the backend's step)": ("none", None, False),
    "compile forward+loss, inductor": ("forward", "inductor", False),
    "compile forward+loss, aot_eager": ("forward", "aot_eager", False),
    "compile whole step, inductor": ("step", "inductor", False),
    "compile forward+loss, inductor, allow_rnn": ("forward", "inductor", True),
    "compile forward+loss, aot_eager, allow_rnn": ("forward", "aot_eager", True),
}
EAGER = next(iter(VARIANTS))
#: the variant measured in fresh processes for (a) and (b)
CHILD_VARIANT = "compile forward+loss, inductor"

#: Exact ("equal to float32 rounding"): the same steps run, the same first
#: non-finite step, loss and gradient norm within `EARLY_REL` of the backend's
#: over the first 20 steps (a few units in the last place: float32's epsilon
#: is 1.2e-7) and within `EXACT_REL` at every finite step (rounding
#: accumulated over hundreds of steps; a run on the edge of stability
#: amplifies it past this, and is then reported as not exact).
EARLY_REL = 1e-6
EXACT_REL = 1e-4

#: What a failing compiler raises (dynamo's and inductor's exceptions are
#: RuntimeErrors; a compiled kernel called with the wrong arguments, a TypeError).
COMPILE_ERRORS = (RuntimeError, TypeError, AssertionError, NotImplementedError)


class Runner:
    """One run of a spec in the backend's loop, with its step eager or compiled.

    Built once; ``run()`` resets the weights and optimizer state in place
    (same tensors, so a compiled step is not recompiled) and trains the
    spec from its initial weights again.
    """

    def __init__(self, spec: RunSpec, variant: str) -> None:
        what, compiler, allow_rnn = VARIANTS[variant]
        self.spec = spec
        self.model = build(spec)
        groups = layer_weights(self.model, spec)
        self.groups = groups
        self.params = [p for group in groups for p in group]
        self.initial = [p.detach().clone() for p in self.params]
        self.optimizer = backend.make_optimizer(spec, self.params)
        loss_fn = nn.MSELoss()
        X_np, y_np = dataset_for(spec)
        X, y = torch.from_numpy(X_np.copy()), torch.from_numpy(y_np.copy())
        idx = torch.from_numpy(batch_indices(len(X_np), spec.batch_size, spec.steps, seed=spec.seed))
        self.Xb, self.yb = X[idx], y[idx]  # (steps, batch, ...): gathered before timing
        model, params, optimizer = self.model, self.params, self.optimizer

        def forward(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            return loss_fn(model(xb), yb)

        self.allow_rnn = allow_rnn
        torch._dynamo.config.allow_rnn = allow_rnn
        if what == "forward":
            forward = own_code(forward, variant)  # type: ignore[assignment]
            forward = torch.compile(forward, backend=compiler)  # type: ignore[assignment]

        def step(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            # The backend's step (no clipping or penalty in these specs);
            # torch.cat gives the same vector as the recorder's flatten.
            for p in params:
                p.grad = None
            loss = forward(xb, yb)
            loss.backward()
            with torch.no_grad():
                flat = torch.cat(
                    [loss.reshape(1), *(p.grad.reshape(-1) for p in params),
                     *(p.reshape(-1) for p in params)])  # fmt: skip
            optimizer.step()
            return flat

        self.step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = (
            torch.compile(own_code(step, variant), backend=compiler) if what == "step" else step
        )
        torch._dynamo.config.allow_rnn = False

    def reset(self) -> None:
        with torch.no_grad():
            for p, p0 in zip(self.params, self.initial, strict=True):
                p.copy_(p0)
        # Zeroed in place, the state gives the first step's values exactly:
        # SGD's buffer 0.9 * 0 + g = g, Adam's moments and step count from 0.
        for state in self.optimizer.state.values():
            for value in state.values():
                if isinstance(value, torch.Tensor):
                    value.zero_()

    def run(self) -> tuple[Trace, float, float]:
        """Train from the initial weights: (trace, seconds, seconds of the first step)."""
        self.reset()
        recorder = backend.LayerRecorder(self.groups, False)
        first = 0.0
        # Read when dynamo traces (the first call, or a recompile).
        torch._dynamo.config.allow_rnn = self.allow_rnn
        with torch_threads(1):
            start = time.perf_counter()
            for t in range(self.spec.steps):
                recorder._pending.append(self.step(self.Xb[t], self.yb[t]))
                if t == 0:
                    first = time.perf_counter() - start
                if not recorder.end_step():
                    break
            rows = recorder.rows()
            seconds = time.perf_counter() - start
        torch._dynamo.config.allow_rnn = False
        return Trace.from_record(rows, self.spec, "torch", seconds), seconds, first


def backend_trace(spec: RunSpec) -> Trace:
    """The backend's own eager run (no run cache, no time budget)."""
    return backend.run(spec, max_seconds=None, progress=False)


def compare(trace: Trace, ref: Trace) -> dict[str, object]:
    """How far ``trace`` is from ``ref``: steps, first non-finite step, largest differences."""
    n = min(trace.steps_run, ref.steps_run)
    out: dict[str, object] = {
        "steps": (trace.steps_run, ref.steps_run),
        "nonfinite": (trace.first_nonfinite_step, ref.first_nonfinite_step),
    }
    for name in ("loss", "grad_norm_total"):
        a, b = getattr(trace, name)[:n], getattr(ref, name)[:n]
        ok = np.isfinite(a) & np.isfinite(b)
        diff = np.abs(a[ok] - b[ok])
        rel = diff / np.maximum(np.abs(b[ok]), 1e-30)
        out[name] = (float(diff.max(initial=0.0)), float(rel.max(initial=0.0)))
        early = min(20, int(ok.sum()))
        out[name + "_20"] = float(rel[:early].max(initial=0.0))
    return out


def max_rel(a: np.ndarray, b: np.ndarray) -> float:
    """Largest relative difference of ``a`` from ``b`` where both are finite."""
    ok = np.isfinite(a) & np.isfinite(b)
    return float((np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-30)).max(initial=0.0))


def is_exact(c: dict[str, object]) -> bool:
    """Equal to float32 rounding (`EXACT_REL`); a run that explodes: the same steps."""
    same_steps = (
        c["steps"][0] == c["steps"][1]  # type: ignore[index]
        and c["nonfinite"][0] == c["nonfinite"][1]  # type: ignore[index]
    )
    if c["nonfinite"][1] is not None:  # type: ignore[index]
        # Growing by orders of magnitude a step, it amplifies any rounding:
        # what a reader sees of it is the step it overflowed.
        return same_steps
    return (
        same_steps
        and c["loss"][1] <= EXACT_REL  # type: ignore[index]
        and c["grad_norm_total"][1] <= EXACT_REL  # type: ignore[index]
        and c["loss_20"] <= EARLY_REL  # type: ignore[operator]
        and c["grad_norm_total_20"] <= EARLY_REL  # type: ignore[operator]
    )


def short_error(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip().splitlines()
    last = [line for line in text if line.strip()][-1] if text else type(error).__name__
    return (text[0][:90] + (" ... " + last[:90] if last != text[0] else "")).replace("|", "/")


# -- (a), (b): fresh processes ---------------------------------------------------------


def child(case: str, variant: str) -> None:
    """In a fresh process: two runs of the case, the first one including any compilation."""
    runner_start = time.perf_counter()
    runner = Runner(CASES[case], variant)
    build_s = time.perf_counter() - runner_start
    _, first_run, first_step = runner.run()
    _, second_run, _ = runner.run()
    print(json.dumps({"import": IMPORT_SECONDS, "build": build_s, "first_run": first_run,
                      "first_step": first_step, "second_run": second_run}))  # fmt: skip


def spawn(case: str, variant: str, cache_dir: str) -> dict[str, float]:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache_dir)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--child", case, variant],
        env=env, capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(done.stderr.strip().splitlines()[-1])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process"] = wall
    return result


def fresh_processes(cases: list[str], quick: bool) -> tuple[list[str], dict[str, dict]]:
    """(a) and (b): eager, cold and warm runs, each in a fresh process, per case."""
    order = ["eager", "cold", "warm"] + ([] if quick else ["eager", "warm"])
    lines = [
        "### (a), (b): a fresh process (a reader's first widget move in a new kernel)",
        "",
        (f"`{CHILD_VARIANT}` against eager, each in a new Python process, in the order "
         f"{', '.join(order)} per case (medians where repeated). *First run*: building "
         "the model and its first full run, compilation included; *second run*: the same "
         "run again in that process. The import of torch and explodebook is left out "
         "(every variant pays it). *cold*: a new, empty `TORCHINDUCTOR_CACHE_DIR`; "
         "*warm*: the same directory again (inductor's FX graph and AOTAutograd caches "
         "hit, dynamo still traces)."),
        "",
        ("| case | eager first run (s) | cold first run (s) | ratio | warm first run (s) "
         "| ratio | eager second run (s) | compiled second run (s) | ratio |"),
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    summary: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="inductor-bench-") as root:
        for number, case in enumerate(cases):
            cache = os.path.join(root, str(number))
            rows: dict[str, list[dict[str, float]]] = {"eager": [], "cold": [], "warm": []}
            try:
                for kind in order:
                    rows[kind].append(spawn(case, EAGER if kind == "eager" else CHILD_VARIANT,
                                            cache))  # fmt: skip
            except RuntimeError as error:
                lines.append(f"| {case} | failed: {short_error(error)} ||||||||")
                continue

            def med(kind: str, key: str, rows: dict = rows) -> float:
                return statistics.median(r[key] for r in rows[kind])

            e, c, w = (med(k, "build") + med(k, "first_run") for k in ("eager", "cold", "warm"))
            e2, c2 = med("eager", "second_run"), med("warm", "second_run")
            lines.append(
                f"| {case} | {e:.2f} | {c:.2f} | {c / e:.1f}x | {w:.2f} | {w / e:.1f}x "
                f"| {e2:.2f} | {c2:.2f} | {c2 / e2:.2f}x |"
            )
            summary[case] = {"cold": c / e, "warm": w / e, "second": c2 / e2,
                             "cold_s": c, "warm_s": w, "eager_s": e}  # fmt: skip
            print(lines[-1], flush=True)
    return lines, summary


# -- (c), (d), exactness: one process --------------------------------------------------


def one_process(
    cases: list[str], repeats: int, moves: bool = True
) -> tuple[list[str], dict[str, dict]]:
    """(c), (d) (``moves``) and exactness, every variant in this process."""
    timing = [
        "### (c) steady state and (d) a new model or shape, in one process",
        "",
        (f"Per-step time of a whole run once compiled (median of {repeats} runs, the "
        "variants alternating in each repeat; runs that go non-finite stop there, as the "
        "backend's). Dynamo breaks the graph at `nn.RNN`/`nn.LSTM` and runs them "
         "eagerly unless `torch._dynamo.config.allow_rnn` is set: without it, compiling an "
         "RNN's forward compiles its head and loss only. "
         "*first run*: the first run of a runner, compilation included, in "
         "this process, whose inductor cache directory started empty (a later case can "
         "reuse graphs an earlier one compiled, e.g. the same linear head). "
        "*new model*: the first run of a new model instance of the same spec (a widget "
        "move back to a setting seen before); *new shape*: of a spec with another "
        f"shape ({NEW_SHAPE}). Ratios against eager's same column."),
        "",
        ("| case | variant | per step (ms) | ratio | first run (s) | ratio | new model (s) "
        "| ratio | new shape (s) | ratio |"),
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    exact = [
        "### Exactness against the backend's eager run",
        "",
        ("Max abs and max relative difference of the loss and the global gradient norm "
        "over the steps both traces have finite; the relative one also over the first "
        "20 steps (a run that diverges amplifies rounding as it goes). Exact (equal to "
        "float32 rounding): same steps, same first non-finite step, relative differences "
        f"<= {EARLY_REL:g} over the first 20 steps and <= {EXACT_REL:g} over all; for a "
        "run that explodes, the same steps and first non-finite step (it amplifies any "
        "rounding by orders of magnitude a step)."),
        "",
        ("| case | variant | steps (this, backend) | first non-finite (this, backend) "
        "| loss abs / rel | rel, first 20 | grad norm abs / rel | rel, first 20 | exact |"),
        "|---|---|---|---|--:|--:|--:|--:|---|",
    ]
    summary: dict[str, dict] = {}
    for case in cases:
        spec = CASES[case]
        ref = backend_trace(spec)
        runners: dict[str, Runner] = {}
        firsts: dict[str, float] = {}
        results: dict[str, dict] = {}
        for variant, (_, _, allow_rnn) in VARIANTS.items():
            if allow_rnn and spec.model != "rnn":
                continue
            try:
                runner = Runner(spec, variant)
                trace, seconds, _ = runner.run()
            except COMPILE_ERRORS as error:  # a compiler failure is a result: record it
                results[variant] = {"error": short_error(error)}
                continue
            runners[variant], firsts[variant] = runner, seconds
            results[variant] = {"compare": compare(trace, ref), "steps": trace.steps_run}
        per_step: dict[str, list[float]] = {v: [] for v in runners}
        for _ in range(repeats):
            for variant, runner in runners.items():
                trace, seconds, _ = runner.run()
                per_step[variant].append(seconds / trace.steps_run)
        for variant in runners if moves else ():  # (d)
            for key, new_spec in (("new model", spec),
                                  ("new shape", spec.replace(**NEW_SHAPE[spec.model]))):  # fmt: skip
                try:
                    start = time.perf_counter()
                    Runner(new_spec, variant).run()
                    results[variant][key] = time.perf_counter() - start
                except COMPILE_ERRORS as error:
                    results[variant][key] = float("nan")
                    results[variant][key + " error"] = short_error(error)
        base = statistics.median(per_step[EAGER])
        for variant, result in results.items():
            if "error" in result:
                timing.append(f"| {case} | {variant} | failed: {result['error']} ||||||||")
                exact.append(f"| {case} | {variant} | failed ||||||||")
                continue
            ms = statistics.median(per_step[variant])
            result["per_step_ratio"] = ms / base
            result["first_ratio"] = firsts[variant] / firsts[EAGER]
            cells = [f"{1e3 * ms:.3f}", f"{ms / base:.2f}x", f"{firsts[variant]:.2f}",
                     f"{firsts[variant] / firsts[EAGER]:.1f}x"]  # fmt: skip
            for key in ("new model", "new shape") if moves else ():
                value = result[key]
                ratio = value / results[EAGER][key]
                result[key + " ratio"] = ratio
                cells += [f"{value:.2f}", f"{ratio:.1f}x"]
            if not moves:
                cells += ["not measured (--quick)", "", "", ""]
            timing.append(f"| {case} | {variant} | " + " | ".join(cells) + " |")
            c = result["compare"]
            result["exact"] = is_exact(c)
            exact.append(
                f"| {case} | {variant} | {c['steps'][0]}, {c['steps'][1]} "
                f"| {c['nonfinite'][0]}, {c['nonfinite'][1]} "
                f"| {c['loss'][0]:.2g} / {c['loss'][1]:.2g} | {c['loss_20']:.2g} "
                f"| {c['grad_norm_total'][0]:.2g} / {c['grad_norm_total'][1]:.2g} "
                f"| {c['grad_norm_total_20']:.2g} | {'yes' if result['exact'] else 'no'} |"
            )
            print(timing[-1], flush=True)
        errors = [f"- {case}, {v}, {k}: {r[k]}" for v, r in results.items() for k in r
                  if k.endswith("error") and k != "error"]  # fmt: skip
        if errors:
            timing += ["", *errors, ""]
        summary[case] = results
    return timing + [""] + exact, summary


# -- 2. torch.func: K runs as one --------------------------------------------------------


def vmapped_runs(specs: list[RunSpec]) -> tuple[list[dict[str, object]], float]:
    """Train K SGD specs that differ only in learning_rate / init_scale as one vmapped run.

    Returns, per run, its loss and global gradient-norm traces (up to its
    first non-finite step, as the backend's) and that step; and the seconds.
    """
    from torch.func import functional_call, grad_and_value, vmap

    base = specs[0]
    assert all(s.replace(learning_rate=base.learning_rate, init_scale=base.init_scale) == base
               for s in specs) and base.optimizer == "sgd" and base.clipping is None  # fmt: skip
    models = [build(s) for s in specs]
    names = [name for name, _ in models[0].named_parameters()]
    params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models])
              for n in names}  # fmt: skip
    k = len(specs)
    neg_lrs = {n: -torch.tensor([s.learning_rate for s in specs]).view(k, *[1] * (p.dim() - 1))
               for n, p in params.items()}  # fmt: skip
    loss_fn = nn.MSELoss()
    template = models[0]

    def loss_of(p: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(template, p, (xb,)), yb)

    step_fn = vmap(grad_and_value(loss_of), in_dims=(0, None, None))
    X_np, y_np = dataset_for(base)
    X, y = torch.from_numpy(X_np.copy()), torch.from_numpy(y_np.copy())
    idx = torch.from_numpy(batch_indices(len(X_np), base.batch_size, base.steps, seed=base.seed))
    Xb, yb = X[idx], y[idx]
    momentum = base.momentum
    losses, grads_seen, bad = [], [], []
    with torch_threads(1), torch.no_grad():
        start = time.perf_counter()
        bufs: dict[str, torch.Tensor] = {}
        gone = torch.zeros(k, dtype=torch.bool)
        for t in range(base.steps):
            if t % 10 == 0 and t and bool((gone := gone | torch.stack(bad[-10:]).any(0)).all()):
                break  # every run has gone non-finite: as the backend, stop
            grads, loss = step_fn(params, Xb[t], yb[t])
            flat_g = torch.cat([g.reshape(k, -1) for g in grads.values()], dim=1)
            flat_p = torch.cat([p.reshape(k, -1) for p in params.values()], dim=1)
            losses.append(loss)
            grads_seen.append(flat_g)  # its norm in float64 after the loop, as the backend's
            bad.append(~(torch.isfinite(flat_g).all(1) & torch.isfinite(flat_p).all(1)
                         & torch.isfinite(loss)))  # fmt: skip
            for n in names:  # SGD with momentum, as torch.optim.SGD(foreach=False)
                g = grads[n]
                bufs[n] = g.clone() if t == 0 else bufs[n].mul_(momentum).add_(g)
                # p + buf * (-lr) in one rounding, as SGD's add_(buf, alpha=-lr):
                # p - lr * buf would round twice and drift from the backend's.
                params[n] = torch.addcmul(params[n], bufs[n], neg_lrs[n])
        loss_all = torch.stack(losses).double().numpy()
        squares = torch.stack(grads_seen).double().square_()
        gnorm_all = squares.sum(2).sqrt_().numpy()
        bad_all = torch.stack(bad).numpy()
        seconds = time.perf_counter() - start
    runs = []
    for j in range(k):
        hits = np.flatnonzero(bad_all[:, j])
        stop = int(hits[0]) if hits.size else None
        end = len(bad_all) if stop is None else stop + 1
        runs.append({"loss": loss_all[:end, j], "grad_norm_total": gnorm_all[:end, j],
                     "first_nonfinite_step": stop, "steps_run": end})  # fmt: skip
    return runs, seconds


def func_lever(k: int, steps: int, repeats: int) -> tuple[list[str], dict[str, dict]]:
    """Time and check K vmapped runs against the backend's K runs, per row of the grid."""
    base = RunSpec(steps=steps)
    rows = {  # name -> (base spec, field, values)
        "learning_rate (init_scale 1)": (
            base, "learning_rate", [float(v) for v in np.geomspace(1e-4, 0.1, k)]),
        "init_scale (learning_rate 0.001)": (
            base.replace(learning_rate=0.001), "init_scale",
            [float(v) for v in np.geomspace(0.25, 4.0, k)]),
        "init_scale (learning_rate 0.01)": (
            base, "init_scale", [float(v) for v in np.geomspace(0.25, 4.0, k)]),
    }  # fmt: skip
    lines = [
        f"## 2. torch.func: {k} runs that differ in one scalar, as one vmapped run",
        "",
        (f"The classic MLP (`RunSpec(steps={steps})`, SGD with momentum 0.9) along a row "
         "or column of `benchmarks/sweep_parallel.py`'s 20x20 grid: the learning rate from "
         "1e-4 to 0.1, or init_scale from 0.25 to 4. *vmap*: one process, one thread, "
         "`vmap(grad_and_value(functional_call))` over the K stacked weights, SGD written "
         "out (`addcmul`, one rounding as `SGD`'s `add_(alpha=-lr)`); it records the loss "
         "and the global gradient norm, and stops when every run has gone non-finite (a "
         "member that explodes early carries NaNs until then). *backend*: the K runs of "
         "`explodebook.backends.torch.run` one after the other (each stops at its first "
         "non-finite step; full per-layer record); *eager loop*: part 1's eager runner "
         "(the backend's step and record, no budget plumbing). Medians of "
         f"{repeats} repeats, alternating. Exactness per run against the backend's trace: "
         "the first non-finite step, and the relative difference of the loss and the "
         "gradient norm over the steps both have finite."),
        "",
        ("| runs vary in | vmap (s) | backend (s) | vmap / backend | eager loop (s) "
         "| vmap / eager loop | same first non-finite step | finite runs exact (as in "
         "part 1) | worst finite run: max rel diff "
         "| diverging runs: max rel diff before the end |"),
        "|---|--:|--:|--:|--:|--:|---|---|---|--:|",
    ]
    summary: dict[str, dict] = {}
    for name, (row_base, field, values) in rows.items():
        specs = [row_base.replace(**{field: v}) for v in values]
        refs = [backend_trace(s) for s in specs]
        runners = [Runner(s, EAGER) for s in specs]
        times: dict[str, list[float]] = {"vmap": [], "backend": [], "eager": []}
        runs: list[dict[str, object]] = []
        for _ in range(repeats):
            runs, seconds = vmapped_runs(specs)
            times["vmap"].append(seconds)
            start = time.perf_counter()
            for s in specs:
                backend_trace(s)
            times["backend"].append(time.perf_counter() - start)
            times["eager"].append(sum(r.run()[1] for r in runners))
        same, within, worst, worst_at, diverging = 0, 0, 0.0, "", 0.0
        n_finite = 0
        for value, run, ref in zip(values, runs, refs, strict=True):
            same += run["first_nonfinite_step"] == ref.first_nonfinite_step
            n = min(run["steps_run"], ref.steps_run)  # type: ignore[type-var]
            rel, early = 0.0, 0.0
            for key in ("loss", "grad_norm_total"):
                a, b = run[key][:n], getattr(ref, key)[:n]  # type: ignore[index]
                rel = max(rel, max_rel(a, b))
                early = max(early, max_rel(a[:20], b[:20]))
            if ref.first_nonfinite_step is None:
                n_finite += 1
                within += rel <= EXACT_REL and early <= EARLY_REL
                if rel >= worst:
                    worst, worst_at = rel, f"{field}={value:.3g}"
            else:
                diverging = max(diverging, rel)
        med = {key: statistics.median(v) for key, v in times.items()}
        lines.append(
            f"| {name}: {k - n_finite} of {k} diverge | {med['vmap']:.2f} "
            f"| {med['backend']:.2f} | {med['vmap'] / med['backend']:.2f}x | {med['eager']:.2f} "
            f"| {med['vmap'] / med['eager']:.2f}x | {same} of {k} | {within} of {n_finite} "
            f"| {worst:.2g} ({worst_at or 'none'}) | {diverging:.2g} |"
        )
        print(lines[-1], flush=True)
        summary[name] = {"ratio_backend": med["vmap"] / med["backend"],
                         "ratio_eager": med["vmap"] / med["eager"], "same": same, "k": k,
                         "within": within, "n_finite": n_finite, "worst": worst,
                         "worst_at": worst_at}  # fmt: skip
    lines += [
        "",
        ("Per step, the vmapped gradients are the backend's to the last bit or one unit "
         "in the last place (batched matrix products round differently); a run on the "
         "edge of stability, whose loss swings by orders of magnitude without going "
         "non-finite, amplifies those units into differences of order one within a few "
         "dozen steps, as it would amplify any rounding (the worst finite run above)."),
    ]
    return lines, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true",
        help="about 80 s: one repeat, no (d), one case in fresh processes, 100-step vmap",
    )
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--child", nargs=2, metavar=("CASE", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    repeats = args.repeats or (1 if args.quick else 3)
    load_start = os.getloadavg()
    command = ".venv/bin/python benchmarks/compile_levers.py" + (" --quick" if args.quick else "")
    if args.repeats:
        command += f" --repeats {args.repeats}"
    cases = list(CASES)
    child_cases = CHILD_CASES[:1] if args.quick else CHILD_CASES
    # In this process too, inductor starts from an empty on-disk cache.
    cache_dir = tempfile.TemporaryDirectory(prefix="inductor-bench-main-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir.name
    started = time.perf_counter()
    part1 = ["## 1. torch.compile of one run's training step", ""]
    timing, summary1 = one_process(cases, repeats, moves=not args.quick)
    part1 += timing + [""]
    fresh_lines, fresh = fresh_processes(child_cases, args.quick)
    part1 += fresh_lines + [""]
    part2, summary2 = func_lever(20, 100 if args.quick else 300, repeats)
    load_end = os.getloadavg()
    header = [
        "# torch.compile and torch.func against the PyTorch backend's eager step",
        "",
        (f"Written by `{command}` (run from the repository root; "
        f"{time.perf_counter() - started:.0f} s). Machine: {platform.platform()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"
        f", one PyTorch thread. Load average (1, 5, 15 min) at start "
        f"{', '.join(f'{v:.2f}' for v in load_start)}, at end "
        f"{', '.join(f'{v:.2f}' for v in load_end)}: a shared machine, so read the "
        "ratios, not the absolute times."),
        "",
    ]
    text = "\n".join(header + part1 + part2 + [""] + conclusion(summary1, fresh, summary2)) + "\n"
    args.out.write_text(text)
    print(text)
    cache_dir.cleanup()


def conclusion(
    summary1: dict[str, dict], fresh: dict[str, dict], summary2: dict[str, dict]
) -> list[str]:
    """The verdict on each lever, computed from this run's numbers."""
    lines = [
        "## Conclusion (computed from the numbers above)",
        "",
        ("*Faster*: per step once compiled, on the three timed cases. *Exact*: on all "
         "cases, by the rule above. *Worth it for widget moves*: exact, faster per step, "
         "and a first run (fresh process with a warm cache where measured, else the first "
         "run in this process) and a new shape no slower than eager's. *Worth it for "
         "sweeps*: exact and at least 10% faster per step (a sweep's worker compiles once "
         "per shape, then runs many specs of it)."),
        "",
    ]
    adopt: list[str] = []
    timed = [c for c in CHILD_CASES if c in summary1]
    for variant in list(VARIANTS)[1:]:
        parts, faster, exact, widget, sweep = [], [], True, True, True
        for case, results in summary1.items():
            r = results.get(variant)
            if r is None:
                continue
            name = case.split(",")[0] + (" (explodes)" if "explodes" in case else "")
            if "error" in r:
                parts.append(f"{name}: fails ({r['error'][:70]})")
                exact = widget = sweep = False
                continue
            exact = exact and r["exact"]
            if case not in timed:
                parts.append(f"{name}: {'exact' if r['exact'] else 'NOT exact'}")
                continue
            in_fresh = variant == CHILD_VARIANT and case in fresh
            first = fresh[case]["warm"] if in_fresh else r["first_ratio"]
            faster.append(r["per_step_ratio"] < 1.0)
            new_shape = r.get("new shape ratio", float("nan"))  # not measured with --quick
            widget = widget and r["per_step_ratio"] < 1.0 and first <= 1.0 and new_shape <= 1.0
            sweep = sweep and r["per_step_ratio"] <= 0.9
            where = "fresh process, warm cache" if in_fresh else "this process"
            parts.append(
                f"{name}: {r['per_step_ratio']:.2f}x eager per step; first run {first:.1f}x "
                f"({where}); new shape "
                + (f"{new_shape:.1f}x; " if not math.isnan(new_shape) else "not measured; ")
                + f"{'exact' if r['exact'] else 'NOT exact'}"
            )
        verdict = (
            f"faster on {sum(faster)} of {len(faster)} timed cases; "
            f"{'exact' if exact else 'not exact'}; widget moves: "
            f"{'worth it' if widget and exact else 'no'}; sweeps: "
            f"{'worth it' if sweep and exact else 'no'}"
        )
        if (widget or sweep) and exact:
            adopt.append(variant)
        lines.append(f"- **{variant}** ({verdict}). " + "; ".join(parts) + ".")
    for name, s in summary2.items():
        exact = s["same"] == s["k"] and s["within"] == s["n_finite"]
        lines.append(
            f"- **vmap, {s['k']} runs varying in {name}**: {s['ratio_backend']:.2f}x the "
            f"backend's serial runs' time ({s['ratio_eager']:.2f}x the eager loop's); same "
            f"first non-finite step in {s['same']} of {s['k']}; {s['within']} of "
            f"{s['n_finite']} finite runs exact"
            + (f", the worst {s['worst']:.2g} ({s['worst_at']})" if not exact else "")
            + f"; {'exact' if exact else 'not exact'}."
        )
    lines += [
        "",
        ("Compile levers worth adopting by this run's rule: "
         + (", ".join(adopt) if adopt else "none") + "."),
    ]
    return lines


if __name__ == "__main__":
    main()
