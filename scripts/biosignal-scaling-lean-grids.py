#!/usr/bin/env python3
"""Writes the lean CPU BIOT scaling grids (issue 19, item 8): bench/biosignal-cpu-{eeg,accel}-lean.toml.

Each lean grid is the v2 grid (bench/biosignal-cpu-{m}-v2.toml, scripts/biosignal-scaling-v2-grids.py)
with every other rung of each ladder: rungs 0, 2, 4, ... of the ladder sorted by N, plus the
largest, so consecutive rungs are ~2x apart instead of sqrt(2) and every ladder keeps both ends
(its span in N, >= 30x, is unchanged). Budgets, seeds, learning rates, batch, data and every
other setting are the v2 grid's, and a cell's id and settings do not depend on the ladder it sits
in, so each lean cell is a v2 cell: a lean run reproduces the v2 rows it shares.

Why: a tiny BIOT cell's optimizer step costs libtorch's fixed per-op time (results/biosignal-
scaling.md, "Cost"), so the design's cost is its optimizer steps, which a ladder's smallest rungs
dominate (steps ~ 1/N at a fixed budget): dropping every other rung removes ~40% of them, while
the recorded v2 rows restricted to the lean cells give the same answers (bracketing, the
allocation exponent's interval, the 5x verdicts; results/biosignal-scaling.md, "Lean design").

Usage: scripts/biosignal-scaling-lean-grids.py [--check]   (--check: exit 1 if the files differ)"""
import importlib.util, os, sys, tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _v2_grids():
    """scripts/biosignal-scaling-v2-grids.py as a module (its name has hyphens)."""
    path = os.path.join(ROOT, "scripts", "biosignal-scaling-v2-grids.py")
    spec = importlib.util.spec_from_file_location("v2_grids", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def n_params(model_path):
    """The per-token parameter count of a model file (the v2 generator's `n_per_token`, which
    follows src/models/biot.rs), used only to check that a ladder is listed in increasing N."""
    t = tomllib.load(open(os.path.join(ROOT, "bench", model_path), "rb"))
    f = t.get("n_fft", 200) // 2 + 1
    return V2.n_per_token(t["d_model"], t["n_layer"], f, t.get("ff_mult", 4))


V2 = _v2_grids()


def q(s):
    return '"' + s + '"'


def lean(mod):
    src = os.path.join(ROOT, "bench", f"biosignal-cpu-{mod}-v2.toml")
    text = open(src).read()
    g = tomllib.loads(text)
    ladders = []
    for lad in g["axes"]["ladders"]:
        ms = lad["models"]
        ns = [n_params(m) for m in ms]
        if ns != sorted(ns):
            sys.exit(f"{src}: ladder at {lad['budget']} is not listed in increasing N")
        keep = sorted(set(range(0, len(ms), 2)) | {len(ms) - 1})
        ladders.append((lad["budget"], [ms[i] for i in keep], ns[-1] / ns[0]))
    used = {m for _, ms, _ in ladders for m in ms}
    models = [m for m in g["axes"]["models"] if m in used]
    budgets = g["axes"]["budgets"]
    # The [cell] section and everything after it, verbatim except lr_by_model (lean models only).
    cell = text[text.index("\n[cell]\n") + 1 :]
    lr = g["cell"].get("lr_by_model", {})
    lr_line = "lr_by_model = { " + ", ".join(f"{q(m)} = {lr[m]}" for m in models if m in lr) + " }"
    # One process trains all 3 seeds, whose batches share the store: 10 GiB keeps about as many
    # steps per seed as 4 GiB did for the v2 grids' one-seed sittings (it changes no number).
    cache = "cache_mib = 10240  # up to 10 GiB of RAM (lower it on a smaller machine: same numbers, slower)"
    cell = "\n".join(
        lr_line if l.startswith("lr_by_model = ") else cache if l.startswith("cache_mib = ") else l
        for l in cell.split("\n")
    )
    def fmt(b):
        m, e = f"{float(b):.10e}".split("e")
        return m.rstrip("0").rstrip(".") + "e" + str(int(e))
    lines = [
        f"# The lean CPU BIOT scaling grid, {mod} (issue 19, item 8): bench/biosignal-cpu-{mod}-v2.toml with every",
        "# other rung of each ladder (rungs 0, 2, 4, ... by N, plus the largest: ~2x apart, both ends kept),",
        "# everything else unchanged, so each cell is a v2 cell. Written by scripts/biosignal-scaling-lean-grids.py;",
        "# run with DESIGN=lean scripts/biosignal-scaling-v2.sh (results/biosignal-scaling.md, \"Lean design\").",
        f'name = "biosignal-cpu-{mod}-lean"',
        f'out = "results/biosignal-scaling-lean/{mod}/grid"',
        "",
        "[axes]",
        "budgets = [" + ", ".join(fmt(b) for b in budgets) + "]",
        "models = [",
        *[f"  {q(m)}," for m in models],
        "]",
        "precisions = [" + ", ".join(q(p) for p in g["axes"]["precisions"]) + "]",
        "seeds = [" + ", ".join(str(s) for s in g["axes"]["seeds"]) + "]",
        "",
    ]
    for b, ms, span in ladders:
        lines += [
            f"# {len(ms)} rungs spanning {span:.1f}x in N",
            "[[axes.ladders]]",
            f"budget = {fmt(b)}",
            "models = [" + ", ".join(q(m) for m in ms) + "]",
            "",
        ]
    return "\n".join(lines) + cell


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for mod in ["eeg", "accel"]:
        path = os.path.join(ROOT, "bench", f"biosignal-cpu-{mod}-lean.toml")
        new = lean(mod)
        old = open(path).read() if os.path.exists(path) else None
        if check:
            if old != new:
                stale.append(path)
        elif old != new:
            with open(path + ".tmp", "w") as f:
                f.write(new)
            os.replace(path + ".tmp", path)
            print(f"wrote {path}")
    if stale:
        sys.exit("out of date (rerun scripts/biosignal-scaling-lean-grids.py): " + ", ".join(stale))


if __name__ == "__main__":
    main()
