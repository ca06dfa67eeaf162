r"""Wall time to sample quality: `sgmteach.train` against PyTorch eager, same recipe and tutorial.

Two questions, kept apart:

1. **The implementation's gain.** The same recipe in both frameworks: `sgmteach.train` with its
   defaults, and a PyTorch eager loop that runs that recipe step for step.
2. **The recipe's gain.** The same `sgmteach.train` against a PyTorch loop written as Song's
   score-SDE tutorial writes it. This mixes recipe and framework: sgmteach's defaults were tuned
   on this benchmark's ring target (`benchmarks/README.md` records the tuning runs), so the ring
   figure flatters them. Every side is therefore also judged on `two_moons()`, which nobody
   tuned on, and the last line reports that held-out target.

The three sides, on the same network with the same initial weights (`ScoreMLP(2, 128, 3)`:
Fourier time embedding of size 32, three hidden layers of 128 SiLU units, output divided by
the marginal std $s_t$; the PyTorch copy is `benchmarks/_torch.py`), forward SDE
`VPSDE(0.1, 20.0)`, one fixed training set of 20,000 points per target, batches of 512 drawn
from it with replacement:

- **sgmteach**: `sgmteach.train(model, sde, data, key=..., steps=S)`, every other argument at
  its default. Those defaults are the recipe: Adam with linear warm-up (`S // 20` steps, at most
  200) and cosine decay from the peak lr 1e-2 to 5% of it at `S`, gradients clipped at global
  norm 1, stratified times in $[10^{-3}, 1]$, $\lambda = s_t^2$, and the bias-corrected EMA of
  the weights (decay 0.99), which is what `train` returns.
- **PyTorch eager, same recipe**: that recipe in PyTorch: `torch.optim.Adam` with the lr set
  each step from Optax's own schedule (checked against `sgmteach.train.default_optimizer`
  before the run), `clip_grad_norm_(1.0)`, the same time sampling and loss, and a zero-initialised
  EMA divided by $1 - 0.99^k$ at the end (Optax's bias correction). The recipe's numbers are
  read from `sgmteach.train`'s signature, so the two stay in step.
- **PyTorch eager, tutorial**: $t \sim U[10^{-3}, 1]$, the same loss, `Adam(lr=1e-3)` at a
  constant rate, no clipping, no EMA, one continuous run (its time is the training time
  accumulated up to a checkpoint).

The schedule of the first two is fitted to the budget `S`, so each checkpoint `S` is a fresh
run. Checkpoints are the same step counts `LADDER` for all three, run in turn (each side's
segment or run, then the next side's), so that load from other processes falls on all. The
clocks stop while a checkpoint is evaluated. On a CPU, PyTorch runs with one intra-op thread
(`--torch-threads N` sets another count). Its default, one OpenMP thread per core, is about
1.4x faster on a lightly loaded 2-core machine but several to tens of times slower whenever
other processes load it, which can happen in the middle of a run; the runs here are too long
to time both ways, as `sampling.py` does. Both counts are timed on 100 steps at the start, and
the script prints them: where the default was faster, the ratios may overstate PyTorch's time
by about that factor.

**Timing, fairly.** Warm-up is excluded on both sides: PyTorch's first steps run untimed
before anything is timed, and from each `sgmteach.train` call the time JAX reports spending on
tracing, lowering and XLA compilation (`jax.monitoring` events) is subtracted. Each `train`
call compiles afresh today (about 4 s on a 2-core CPU); the summary prints that time and the
ratios with it included. A side's time to quality is the median of `REPEATS` runs to the step
count at which it reached quality (the ladder's run, then `REPEATS - 1` fresh runs, the three
sides in turn). The summary also gives the two same-recipe sides' time per step (the median
over the budgets both ran), which isolates the implementation from the luck of which
checkpoint passes.

**Quality.** A model's samples come from `sgmteach.sample` (reverse SDE, Euler–Maruyama, 500
steps, $t_0 = 10^{-3}$); PyTorch weights are copied into a `ScoreMLP` first, so all sides are
judged by the same code with the same keys. One sliced $W_1$ (256 fixed projections) at n = 4000
has a relative spread of about 30%, with a long right tail, so a single draw passes or fails by
luck. The score at a checkpoint is the mean over 8 groups of 4000 samples of the sliced $W_1$
from each group to its own fresh 4000-point target sample, divided by the Monte-Carlo floor (the
mean of `mc_floor` over 64 pairs of 4000-point target samples). To save time, evaluation stops
after 2 groups when their mean exceeds 2.5 (single groups of models scoring 1.1-1.3 reached at
most 2.7 in our runs, so a model near the threshold is not cut short this way). A side has
reached quality at checkpoint `S` when its score is <= 1.3 there and at the next checkpoint. A
side that never gets there stops at `CAP` steps, or, once sgmteach has reached quality, when its
time passes `TIME_CAP` times sgmteach's: its time is then a lower bound, and the speedup says so.

The last line is `speedup_vs_pytorch_same_recipe=<x> speedup_vs_pytorch_tutorial=<y>` on the
held-out `two_moons()`: each PyTorch side's time to quality over sgmteach's. Each target's pair
is printed on the lines before it.

Both targets should take about half an hour on a loaded 2-core CPU (an estimate), two_moons
most of it (1.3x its floor takes sgmteach several thousand steps). `--target ring` or
`--target two_moons` runs one (the last line then reports that one). `--quick` (or
`BENCH_QUICK=1`): small sizes and a loose threshold, to check that the script runs; its figures
mean nothing.

Run: `.venv/bin/python benchmarks/train_to_quality.py` (or `make bench`).
"""

import functools
import inspect
import os
import sys
import time

import jax
import jax.monitoring
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import torch
from _torch import TorchScoreMLP, check_copy, pick_threads, to_score_mlp

import sgmteach as sg
from sgmteach.train import default_optimizer

QUICK = "--quick" in sys.argv[1:] or os.environ.get("BENCH_QUICK") == "1"
SEED = 0
BATCH_TUTORIAL, LR_TUTORIAL = 512, 1e-3
if QUICK:
    N_DATA, N_EVAL, GROUPS, SCREEN_GROUPS, SCREEN = 4000, 1000, 2, 2, 1e9
    FLOOR_REPEATS, SAMPLE_STEPS, THRESHOLD = 8, 100, 2.0
    LADDER, REPEATS = (100, 200, 300, 400), 2
else:
    N_DATA, N_EVAL, GROUPS, SCREEN_GROUPS, SCREEN = 20_000, 4000, 8, 2, 2.5
    FLOOR_REPEATS, SAMPLE_STEPS, THRESHOLD = 64, 500, 1.3
    LADDER = (500, 1000, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000, 10000, 12000, 14000,
              16000, 18000, 20000)
    REPEATS = 3
CAP = LADDER[-1]
TIME_CAP = 20.0
TARGETS = {  # --target name -> (printed name, target, why it is here)
    "ring": ("ring(8, 4.0, 0.3)", sg.ring(8, 4.0, 0.3), "the recipe was tuned on it"),
    "two_moons": ("two_moons()", sg.two_moons(), "held out: not used for tuning"),
}
HELD_OUT = "two_moons"


def chosen_targets() -> list[str]:
    """`--target ring` or `--target two_moons` runs one; the default runs both."""
    args = sys.argv[1:]
    if "--target" not in args:
        return list(TARGETS)
    i = args.index("--target")
    name = args[i + 1] if i + 1 < len(args) else ""
    if name not in TARGETS:
        raise SystemExit(f"--target takes one of {list(TARGETS)}, got {name!r}")
    return [name]


# The recipe, read from sgmteach.train's defaults so that the PyTorch copy follows them.
_DEFAULTS = {k: p.default for k, p in inspect.signature(sg.train).parameters.items()}
BATCH, LR, EMA_DECAY, T_MIN = (_DEFAULTS[k] for k in ("batch_size", "lr", "ema_decay", "t_min"))
if (_DEFAULTS["weighting"], _DEFAULTS["time_sampling"]) != ("sigma2", "stratified"):
    raise RuntimeError("sgmteach.train's defaults changed: update the PyTorch recipe here.")
CLIP = 1.0  # default_optimizer's clip_by_global_norm


def torch_threads() -> int:
    """`--torch-threads N`, default 1 (see the module docstring)."""
    args = sys.argv[1:]
    if "--torch-threads" not in args:
        return 1
    i = args.index("--torch-threads")
    try:
        return max(int(args[i + 1]), 1)
    except (IndexError, ValueError):
        raise SystemExit("--torch-threads takes a positive integer") from None


TORCH_THREADS = torch_threads()


# ---------------------------------------------------------------- JAX compile time
class CompileClock:
    """Seconds JAX reports spending on tracing, lowering and compiling (`jax.monitoring`)."""

    EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
              "/jax/core/compile/jaxpr_to_mlir_module_duration",
              "/jax/core/compile/backend_compile_duration")

    def __init__(self):
        self.total = 0.0
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **_):
        if event in self.EVENTS:
            self.total += duration


COMPILE = CompileClock()


def jax_run(model0, sde, data, key, steps):
    """`sgmteach.train` at `steps`: `(model, seconds without compiling, seconds compiling)`."""
    before = COMPILE.total
    start = time.perf_counter()
    model, _ = sg.train(model0, sde, data, key=key, steps=steps, progress=False)
    jax.block_until_ready(model)
    wall = time.perf_counter() - start
    compiling = COMPILE.total - before
    return model, wall - compiling, compiling


# ---------------------------------------------------------------- the PyTorch loops
def recipe_lrs(steps: int) -> np.ndarray:
    """The learning rate of each step under `default_optimizer(steps, LR)`, from Optax."""
    warmup = min(max(steps // 20, 1), 200)
    schedule = optax.warmup_cosine_decay_schedule(0.0, LR, warmup, max(steps, warmup + 1),
                                                  end_value=0.05 * LR)
    return np.asarray(schedule(jnp.arange(steps)), dtype=np.float64)


def check_schedule(steps: int) -> None:
    """Raise unless `recipe_lrs` is the step size `default_optimizer` takes.

    A unit gradient on one scalar passes the clipping unchanged and makes Adam's normalised
    step 1 (up to eps and float32 rounding), so each update is minus that step's learning
    rate.
    """
    opt = default_optimizer(steps, LR)

    def body(state, _):
        updates, state = opt.update(jnp.ones(()), state, jnp.zeros(()))
        return state, -updates

    _, taken = jax.lax.scan(body, opt.init(jnp.zeros(())), None, length=steps)
    gap = np.max(np.abs(np.asarray(taken) - recipe_lrs(steps)))
    if not gap <= 1e-4 * LR:  # float32 Adam; a wrong warm-up is off by >= LR / 200
        raise RuntimeError(f"the PyTorch recipe's schedule differs from default_optimizer({steps})"
                           f" by {gap:.2e}")


def dsm_loss(net: TorchScoreMLP, x0, t):
    r"""$\frac1n\sum\|s_t\,s_\theta(x_t, t) + z\|^2$ ($\lambda = s_t^2$), as `sgmteach.dsm_loss`."""
    z = torch.randn_like(x0)
    mean, std = net.marginal(t)
    xt = mean[:, None] * x0 + std[:, None] * z
    return torch.mean(torch.sum((std[:, None] * net(xt, t) + z) ** 2, dim=1))


def recipe_run(model0, data, steps: int):
    """PyTorch eager, sgmteach's recipe, a fresh run of `steps`: `(EMA net, seconds)`."""
    torch.manual_seed(SEED)
    net = TorchScoreMLP(model0, check=False)
    params = list(net.parameters())
    optimizer = torch.optim.Adam(params, lr=0.0)
    ema = [torch.zeros_like(p) for p in params]
    lrs = recipe_lrs(steps).tolist()
    strata = torch.arange(BATCH)
    start = time.perf_counter()
    for i in range(steps):
        x0 = data[torch.randint(0, data.shape[0], (BATCH,))]
        t = T_MIN + (net.T - T_MIN) * (strata + torch.rand(BATCH)) / BATCH  # stratified
        loss = dsm_loss(net, x0, t)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        optimizer.param_groups[0]["lr"] = lrs[i]
        optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, params, 1.0 - EMA_DECAY)  # ema = d*ema + (1-d)*params
    with torch.no_grad():  # Optax's bias correction: divide by 1 - d^k
        for p, e in zip(params, ema, strict=True):
            p.copy_(e / (1.0 - EMA_DECAY**steps))
    return net, time.perf_counter() - start


class TutorialRun:
    """PyTorch eager as the tutorials write it: one continuous run, trained in segments."""

    def __init__(self, model0, data):
        torch.manual_seed(SEED)
        self.net, self.data = TorchScoreMLP(model0, check=False), data
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=LR_TUTORIAL)
        self.steps, self.clock = 0, 0.0

    def train_to(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps - self.steps):
            x0 = self.data[torch.randint(0, self.data.shape[0], (BATCH_TUTORIAL,))]
            t = torch.rand(BATCH_TUTORIAL) * (self.net.T - T_MIN) + T_MIN
            loss = dsm_loss(self.net, x0, t)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        self.clock += time.perf_counter() - start
        self.steps = steps
        return self.clock


# ---------------------------------------------------------------- the quality criterion
def quality(model, sde, target, metric, floor: float, idx: int, *, key) -> tuple[float, int]:
    """Mean over groups of sliced W1(group of samples, fresh target sample) / floor."""
    ratios = []
    for g in range(GROUPS):
        sk, rk = jr.split(jr.fold_in(jr.fold_in(key, idx), g))
        x = sg.sample(model, sde, N_EVAL, 2, key=sk, steps=SAMPLE_STEPS)
        ratios.append(metric(x, target.sample(N_EVAL, key=rk)) / floor)
        if g + 1 == SCREEN_GROUPS and np.mean(ratios) > SCREEN:
            break
    return float(np.mean(ratios)), len(ratios)


class Side:
    """One contender's checkpoints `(steps, score, seconds)`, and when it reached quality."""

    def __init__(self, name: str):
        self.name, self.history, self.stopped = name, [], False
        self.times: list[float] = []  # timed runs at the step count that reached quality

    def reached(self):
        """`(steps, seconds)` of the first checkpoint that passes twice running, or None."""
        for (s, q, t), (_, q_next, _) in zip(self.history[:-1], self.history[1:], strict=True):
            if q <= THRESHOLD and q_next <= THRESHOLD:
                return s, t
        return None

    @property
    def done(self) -> bool:
        return self.stopped or self.reached() is not None

    def result(self) -> tuple[float, bool]:
        """`(seconds, reached)`: the median time to quality, or the last time (a bound)."""
        if self.reached() is not None:
            return float(np.median(self.times)), True
        return self.history[-1][2], False

    def summary(self) -> str:
        hit = self.reached()
        if hit is None:
            steps, _, t = self.history[-1]
            return f"{self.name:<28} NOT at quality after {steps} steps ({t:.2f} s)"
        runs = ", ".join(f"{t:.2f}" for t in self.times)
        return (f"{self.name:<28} quality at {hit[0]:>5} steps: {np.median(self.times):7.2f} s "
                f"(median of {runs})")


def ratio_text(theirs: Side, ours: Side, t_ours: float) -> tuple[float, str]:
    (t_theirs, ok_theirs), (_, ok_ours) = theirs.result(), ours.result()
    x = t_theirs / t_ours
    note = "" if ok_theirs else " (a lower bound: PyTorch never got there)"
    if not ok_ours:
        note = " (sgmteach never got there: times to the cap)"
    return x, f"{x:.2f}{note}"


# ---------------------------------------------------------------- one target
def race(name: str, target, why: str, *, keys) -> dict:
    data_key, init_key, train_key, floor_key, eval_key, proj_key = keys
    sde = sg.VPSDE(0.1, 20.0)
    data = target.sample(N_DATA, key=data_key)
    metric = functools.partial(sg.sliced_wasserstein, key=proj_key)
    floor = sg.mc_floor(metric, target, N_EVAL, key=floor_key, repeats=FLOOR_REPEATS)
    print(f"\n== {name}: {why}. Sliced W1 floor at n={N_EVAL}: {floor}")
    model0 = sg.ScoreMLP(2, 128, 3, key=init_key, sde=sde)
    judge = functools.partial(quality, sde=sde, target=target, metric=metric, floor=floor.mean,
                              key=eval_key)
    torch_data = torch.tensor(np.asarray(data))

    ours = Side("sgmteach.train (defaults)")
    same = Side("PyTorch eager, same recipe")
    tut = Side("PyTorch eager, tutorial")
    tutorial = TutorialRun(model0, torch_data)
    compile_s: list[float] = []
    per_step = {"ours": [], "same": []}  # ms per step at each budget both ran

    print(f"{'steps':>6} | {'sgmteach':>13} {'s':>6} | {'same recipe':>13} {'s':>6} | "
          f"{'tutorial':>13} {'s':>6}     (W1/floor, groups evaluated; seconds)")
    for idx, steps in enumerate(LADDER):
        models = {}
        if not ours.done:
            model, run_s, comp_s = jax_run(model0, sde, data, train_key, steps)
            models[ours] = (model, run_s)
            compile_s.append(comp_s)
        if not same.done:
            net, run_s = recipe_run(model0, torch_data, steps)
            models[same] = (to_score_mlp(net, model0), run_s)
        if not tut.done:
            run_s = tutorial.train_to(steps)
            models[tut] = (to_score_mlp(tutorial.net, model0), run_s)
        if ours in models and same in models:
            per_step["ours"].append(1e3 * models[ours][1] / steps)
            per_step["same"].append(1e3 * models[same][1] / steps)
        row = f"{steps:>6} |"
        for side in (ours, same, tut):
            if side in models:
                q, g = judge(models[side][0], idx=idx)
                side.history.append((steps, q, models[side][1]))
                row += f" {q:>8.2f} ({g}g) {models[side][1]:>6.2f} |"
            else:
                row += f" {'(done)':>13} {'':>6} |"
        print(row.rstrip(" |"), flush=True)
        if ours.reached():
            for side in (same, tut):
                if not side.done and side.history[-1][2] > TIME_CAP * ours.reached()[1]:
                    side.stopped = True
                    print(f"{side.name} stopped: its time passed {TIME_CAP:g}x sgmteach's.")
        if ours.done and same.done and tut.done:
            break

    # Time to quality: the ladder's run, then REPEATS - 1 fresh runs, the sides in turn.
    for side in (ours, same, tut):
        if side.reached():
            side.times.append(side.reached()[1])
    for _ in range(REPEATS - 1):
        if ours.reached():
            _, run_s, comp_s = jax_run(model0, sde, data, train_key, ours.reached()[0])
            ours.times.append(run_s)
            compile_s.append(comp_s)
        if same.reached():
            same.times.append(recipe_run(model0, torch_data, same.reached()[0])[1])
        if tut.reached():
            tut.times.append(TutorialRun(model0, torch_data).train_to(tut.reached()[0]))

    for side in (ours, same, tut):
        print("  " + side.summary())
    t_ours = ours.result()[0]
    comp = float(np.median(compile_s))
    ms = {k: float(np.median(v)) for k, v in per_step.items()}
    print(f"  time per step, median over the {len(per_step['ours'])} budgets both ran: sgmteach "
          f"{ms['ours']:.2f} ms, PyTorch same recipe {ms['same']:.2f} ms "
          f"({ms['same'] / ms['ours']:.2f}x)")
    x_same, same_txt = ratio_text(same, ours, t_ours)
    x_tut, tut_txt = ratio_text(tut, ours, t_ours)
    print(f"  speedup vs PyTorch: same recipe {same_txt}; tutorial {tut_txt}")
    with_compile = t_ours + comp
    print(f"  sgmteach compiles for {comp:.2f} s per train call (median), not counted above; "
          f"counted: same recipe {same.result()[0] / with_compile:.2f}, "
          f"tutorial {tut.result()[0] / with_compile:.2f}")
    return {"same": x_same, "tutorial": x_tut}


def main() -> None:
    print(f"JAX {jax.__version__} ({jax.default_backend()}), {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}" + (" (--quick: figures mean nothing)"
                                                       if QUICK else ""))
    print(f"quality: mean of {GROUPS} groups of {N_EVAL} samples <= {THRESHOLD} x the sliced-W1 "
          "floor at two checkpoints running")
    for steps in sorted({LADDER[0], LADDER[-1]}):
        check_schedule(steps)

    # Warm-ups (untimed): JAX's eager ops, PyTorch's first allocations and its thread count.
    sde = sg.VPSDE(0.1, 20.0)
    model0 = sg.ScoreMLP(2, 128, 3, key=jr.key(SEED), sde=sde)
    net = TorchScoreMLP(model0)  # checks the weight copy to PyTorch
    check_copy(net, to_score_mlp(net, model0))  # and the copy back, used for judging
    warm = sg.ring().sample(1000, key=jr.key(SEED))
    sg.train(model0, sde, warm, key=jr.key(SEED), steps=2, progress=False)
    jax_work = lambda: sg.sample(model0, sde, 1000, 2, key=jr.key(SEED),
                                 steps=SAMPLE_STEPS).block_until_ready()
    jax_work()
    probe = pick_threads(lambda: recipe_run(model0, torch.tensor(np.asarray(warm)), 100),
                         pre=jax_work)
    torch.set_num_threads(TORCH_THREADS)
    tried = ", ".join(f"{k} thread(s) {1e3 * t:.0f} ms" for k, t in probe.items())
    print(f"PyTorch {torch.__version__}: {TORCH_THREADS} intra-op thread(s) (100 steps of the "
          f"recipe just now: {tried})")
    if min(probe, key=probe.get) != TORCH_THREADS:
        print(f"  (another thread count was {probe[TORCH_THREADS] / min(probe.values()):.2f}x "
              "faster just now: the ratios against PyTorch may overstate it by about that)")

    results = {}
    for name in chosen_targets():
        label, target, why = TARGETS[name]
        i = list(TARGETS).index(name)
        # The ring keeps the keys (data, initial weights ...) the recipe was tuned with.
        keys = jr.split(jr.key(SEED) if i == 0 else jr.fold_in(jr.key(SEED), i), 6)
        results[name] = race(label, target, why, keys=keys)

    load = os.getloadavg()[0]
    print(f"\nload average now {load:.1f} on {os.cpu_count()} CPUs"
          + (" (oversubscribed: timings are noisy)" if load > (os.cpu_count() or 1) else ""))
    last = HELD_OUT if HELD_OUT in results else next(iter(results))
    for name, r in results.items():
        print(f"{TARGETS[name][0]} ({TARGETS[name][2]}): speedup_vs_pytorch_same_recipe="
              f"{r['same']:.2f} speedup_vs_pytorch_tutorial={r['tutorial']:.2f}")
    r = results[last]
    print(f"speedup_vs_pytorch_same_recipe={r['same']:.2f} "
          f"speedup_vs_pytorch_tutorial={r['tutorial']:.2f}")


if __name__ == "__main__":
    main()
