#!/usr/bin/env python3
"""Writes the redone CPU BIOT scaling grids (issue 19, item 7): bench/biosignal-cpu-{eeg,accel}-v2.toml.

Design per modality: 7 fitted budgets spanning 31.6x (quarter-decade steps) and a validation
budget 5x above the largest; at each budget a ladder of RUNGS configs sqrt(2) apart (11: 32x in N
nominal; extended downwards when snapping to configs leaves it under 30x), centred on a prior
N_opt(C) = N0 * (C / C0)^0.5 taken from the recorded study's optima (EEG ~4.9k at 5e9-5e10,
accelerometer ~1.7-2.5k at 1.25e9-1.25e10); 3 seeds; min_steps 100 (the first budget is the
smallest, on a sixteenth-decade grid, whose largest rung trains 100 steps). Rungs take an existing
models/biot-*.toml within a quarter of a sqrt(2) step, else a generated config (same rule as
`scaling plan`, src/study/scaling/plan.rs: even widths up to 32 with one head and depth 1-2,
multiples of 8 up to 128 with ceil(d/32) heads and depth 2-4, wider at depth 4; nearest N). N and
FLOPs per token follow src/models/biot.rs and src/core/flops.rs (checked against the grid loader by
tests/bench_biosignal.rs).

Why batch 8 (the default here; the recorded study used 32): with >= 100 steps on a ladder's largest
rung and N_opt ~ C^0.5, the optimizer steps of the design hardly depend on the batch (~2.3 M for
both grids), but the FLOPs scale with batch^2 (the first budget ~ (min_steps * batch)^2), so batch 8
is 16x cheaper in FLOPs than 32 at the same step count (results/biosignal-scaling.md, "Cost").

Usage: scripts/biosignal-scaling-v2-grids.py [--batch 8] [--rungs 11] [--t0-ms MS] [--gflops R]
[--cache-mib MIB] [--render-ms-eeg MS] [--render-ms-accel MS] [--dry-run]: prints cells, optimizer
steps and the wall time if a step costs MS ms plus its FLOPs at R GFLOP/s on one core plus the
windows it renders (each step's batch is rendered once per seed while the shared store, cache_mib,
holds it), 2 cells at once on 2 cores; measure them with scripts/biosignal-scaling-v2-cost.py.
--dry-run writes nothing."""
import math, os, sys, tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models")


def n_per_token(d, l, f=101, m=4):
    per_layer = 2 * d + 3 * d * d + (d * d + d) + 2 * d + (d * m * d + m * d) + (m * d * d + d)
    return f * d + d + l * per_layer


def flops_per_token(d, l, h, kept, tpw):
    n = n_per_token(d, l)
    enc = 6 * n + 12 * l * d * (d // h)
    pred = 2 * (d * d + d)
    return enc * (1 + kept) + 6 * pred / tpw


GENERATED = {}


def existing():
    """The hand-made BIOT ladder plus the configs generated so far in this run (files this
    script wrote earlier are skipped: the design must not depend on them)."""
    out = dict(GENERATED)
    for f in sorted(os.listdir(MODELS)):
        if f.startswith("biot-d") and f.endswith(".toml") and "transfer" not in f:
            if open(os.path.join(MODELS, f)).readline().startswith("# Generated for the redone"):
                continue
            t = tomllib.load(open(os.path.join(MODELS, f), "rb"))
            d, l, h = t["d_model"], t["n_layer"], t.get("n_head", 8)
            out[f[:-5]] = (d, l, h)
    return out


def shapes():
    """(d, l, heads) of the generated configs: `scaling plan`'s rule (src/study/scaling/plan.rs)."""
    for d in range(2, 513, 2):
        h = -(-d // 32)
        if d % h or (d > 32 and d % 8):
            continue
        depths = [1, 2] if d <= 32 else [2, 3, 4] if d <= 128 else [4]
        for l in depths:
            yield d, l, h


def generate(target):
    return min(shapes(), key=lambda s: abs(math.log(n_per_token(s[0], s[1]) / target)) + 1e-3 * s[1])


TEMPLATE = """# Generated for the redone CPU scaling grids (scripts/biosignal-scaling-v2-grids.py; the rule of
# `scaling plan`): N = {n} per-token parameters.
model = "biot"
name = "{name}"
d_model = {d}
n_layer = {l}
n_head = {h}
n_fft = 200
hop = 100
n_channels = 18
n_classes = 2
"""

MODALITIES = {
    # name: (tokens per window, kept share of the subset view, prior N0 at C0, lowest budget)
    "eeg": (36, 6 / 9, 4864, 5e9),
    "accel": (12, 5 / 8, 2000, 1.25e9),
}


def design(mod, batch=None, min_steps=None, rungs=None, budgets=7):
    min_steps = min_steps or MIN_STEPS
    batch = batch or BATCH
    rungs = rungs or RUNGS
    tpw, kept, n0, c0 = MODALITIES[mod]
    models = existing()
    tps = batch * tpw
    prior = lambda c: n0 * (c / c0) ** 0.5
    # Smallest first budget (quarter-decade grid) whose largest rung trains >= min_steps.
    def ladder(c, models, written):
        """The rungs at budget c: (name, (d, l, h)), existing configs or generated ones."""
        rung = []
        for j in range(rungs):
            target = prior(c) * 2 ** ((j - (rungs - 1) / 2) / 2)
            near = min(models.items(), key=lambda kv: abs(math.log(n_per_token(kv[1][0], kv[1][1]) / target)))
            if abs(math.log(n_per_token(near[1][0], near[1][1]) / target)) < 0.5 * math.log(2 ** 0.5):
                name, (d, l, h) = near
            else:
                d, l, h = generate(target)
                name = f"biot-d{d}-l{l}"
                if name not in models:
                    models[name] = (d, l, h)
                    written.append(name)
            if name not in [r[0] for r in rung]:
                rung.append((name, (d, l, h)))
        # Snapping can shrink the span below 30x: extend downwards (the top rung is the one at
        # min_steps), a sqrt(2) step at a time.
        n = lambda r: n_per_token(r[1][0], r[1][1])
        while max(map(n, rung)) / min(map(n, rung)) < 30:
            target = min(map(n, rung)) / 2 ** 0.5
            d, l, h = generate(target)
            name = f"biot-d{d}-l{l}"
            near = min(models.items(), key=lambda kv: abs(math.log(n_per_token(kv[1][0], kv[1][1]) / target)))
            if abs(math.log(n_per_token(near[1][0], near[1][1]) / target)) < abs(math.log(n_per_token(d, l) / target)):
                name, (d, l, h) = near
            elif name not in models:
                models[name] = (d, l, h)
                written.append(name)
            if name in [r[0] for r in rung]:
                break  # no smaller config
            rung.insert(0, (name, (d, l, h)))
        return rung

    # Smallest first budget (a sixteenth-decade grid from the recorded study's C0) whose
    # largest rung, as snapped to configs, trains >= min_steps.
    cmin = c0
    while min(round(cmin / flops_per_token(d, l, h, kept, tpw) / tps)
              for _, (d, l, h) in ladder(cmin, dict(models), [])) < min_steps:
        cmin *= 10 ** (1 / 16)
    # Rounded as the grid file writes them, so the validation budget is 5x the written one.
    fitted = [float(f"{cmin * 10 ** (0.25 * i):.4g}") for i in range(budgets)]
    allb = fitted + [fitted[-1] * 5]
    ladders, used, steps, written = [], {}, 0, []
    seconds, cell_steps = 0.0, []
    for c in allb:
        rung = []
        for name, (d, l, h) in ladder(c, models, written):
            rung.append(name)
            used[name] = (d, l, h)
            s = round(c / flops_per_token(d, l, h, kept, tpw) / tps)
            assert s >= min_steps, (mod, c, name, s)
            steps += SEEDS * s
            cell_steps.append(s)
            seconds += SEEDS * s * (T0 + tps * flops_per_token(d, l, h, kept, tpw) / RATE)
        ladders.append((c, rung))
    # Rendering the windows: every cell of a seed draws the same batch at step s, and the
    # process-wide store (cache_mib) keeps the first `cached` steps, so a seed renders
    # max(steps) batches once plus, per cell, the steps beyond the store.
    bytes_per_step = batch * WINDOW_BYTES[mod]
    cached = int(CACHE_MIB * 2**20 / 3 // bytes_per_step)  # three seeds share the store
    renders = min(max(cell_steps), cached) + sum(max(0, s - cached) for s in cell_steps)
    seconds += SEEDS * renders * batch * RENDER_MS[mod] / 1e3
    return fitted, allb, ladders, used, steps, written, seconds


def fmt(c):
    return f"{c:.6g}".replace("e+", "e")


def write(mod, fitted, allb, ladders, used, written):
    for name in written:
        d, l, h = used[name]
        p = os.path.join(MODELS, name + ".toml")
        if not os.path.exists(p):
            open(p, "w").write(TEMPLATE.format(n=n_per_token(d, l), name=name, d=d, l=l, h=h))
    names = sorted(used, key=lambda m: n_per_token(*used[m][:2]))
    lines = [
        f"# The redone CPU scaling study of BIOT's contrastive pretraining, {mod}-like windows (issue 19):",
        f"# 7 fitted budgets {fmt(fitted[0])}-{fmt(fitted[-1])} ({fitted[-1] / fitted[0]:.1f}x), validation at {fmt(allb[-1])} (5x the largest),",
        f"# each budget a {RUNGS}-rung ladder sqrt(2) apart ({2 ** ((RUNGS - 1) / 2):.0f}x in N nominal, >= 30x after snapping to configs) centred on the prior N_opt, 3 seeds,",
        f"# batch {BATCH} (InfoNCE over {BATCH} candidates), rendered batches shared by the cells of a seed (cache_mib).",
        "# at least 100 optimizer steps per cell. Written by scripts/biosignal-scaling-v2-grids.py;",
        "# run with scripts/biosignal-scaling-v2.sh (resumable; results/biosignal-scaling.md).",
        f'name = "biosignal-cpu-{mod}-v2"',
        f'out = "results/biosignal-scaling-v2/{mod}/grid"',
        "",
        "[axes]",
        "budgets = [" + ", ".join(fmt(c) for c in allb) + "]",
        "models = [",
    ]
    lines += [f'  "../models/{m}.toml",' for m in names]
    lines += ["]", 'precisions = ["fp32"]', "seeds = [0, 1, 2]", ""]
    for c, rung in ladders:
        lines += ["[[axes.ladders]]", f"budget = {fmt(c)}", "models = [" + ", ".join(f'"../models/{m}.toml"' for m in rung) + "]", ""]
    lines += [
        "[cell]",
        'kind = "biosignal"',
        f'modality = "{mod}"',
        "rate = 200.0",
        f"batch_size = {BATCH}",
        "lr = 2e-3",
        "eval_windows = 128",
        "data_seed = 0",
        'device = "cpu"',
        "threads = 1",
        "min_steps = 100",
        f"cache_mib = {CACHE_MIB:.0f}",
        "",
        "[executor]",
        'kind = "local"',
        "parallel = 2",
        "",
        "[slurm]",
        'time = "02:00:00"',
        "cpus_per_task = 1",
        'mem = "4G"',
        "",
    ]
    open(os.path.join(ROOT, "bench", f"biosignal-cpu-{mod}-v2.toml"), "w").write("\n".join(lines))


def arg(name, default):
    return float(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


T0 = arg("--t0-ms", 25.0) / 1e3
RATE = arg("--gflops", 10.0) * 1e9
BATCH = int(arg("--batch", 8))
MIN_STEPS = int(arg("--min-steps", 100))
SEEDS = int(arg("--seeds", 3))
RUNGS = int(arg("--rungs", 11))
CACHE_MIB = arg("--cache-mib", 4096)
# CPU ms to render one window (one core; `biosignal synth`, results/biosignal-scaling.md) and its
# bytes as fp32.
RENDER_MS = {"eeg": arg("--render-ms-eeg", 0.50), "accel": arg("--render-ms-accel", 0.11)}
WINDOW_BYTES = {"eeg": 4 * 1000 * 4, "accel": 3 * 512 * 4}
WRITE = "--dry-run" not in sys.argv

if __name__ == "__main__":
    total, secs = 0, 0.0
    for mod in MODALITIES:
        # Rerun the design until it generates nothing new: a config generated for one rung may
        # be the nearest for another, so the result does not depend on what models/ held.
        while True:
            fitted, allb, ladders, used, steps, written, seconds = design(mod)
            GENERATED.update({n: used[n] for n in written})
            if not written:
                break
        if WRITE:
            write(mod, fitted, allb, ladders, used, [n for n in used if n in GENERATED])
        cells = 3 * sum(len(r) for _, r in ladders)
        total += steps
        secs += seconds
        print(f"{mod}: budgets {[fmt(c) for c in allb]}, {cells} cells, {steps} optimizer steps, "
              f"{seconds / 3600:.1f} core-hours")
    print(f"both: {total} steps, {secs / 3600:.1f} core-hours: {secs / 2 / 3600:.1f} h on 2 idle cores "
          f"(step = {T0 * 1e3:g} ms + FLOPs at {RATE / 1e9:g} GFLOP/s)")
