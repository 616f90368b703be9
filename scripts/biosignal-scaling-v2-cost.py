#!/usr/bin/env python3
"""The cost of the redone CPU BIOT grids (issue 19, item 8), from a short timed sample on this machine.

1. The one-thread fp32 matmul peak, measured now, in CPU time: 512x512 products in the venv's
   PyTorch (the libtorch the binary links, LIBTORCH_USE_PYTORCH=1), one thread, timed with the
   thread's CPU clock (best of 5); and, for reference, the wall-clock peak `bench-train` prints.
2. A sample of real cells (BIOT contrastive pretraining, the grids' settings: one libtorch thread,
   the batch of the design) over models spanning the design's ladders, STEPS steps each, run as one
   grid with the shared batch store, so only the first cell renders its windows; each cell's row says
   how many batches it rendered (`batches_rendered`), its thread's CPU seconds (`train_cpu_s`) and
   the part spent getting batches (`data_cpu_s`: rendering, or copying from the store).
3. A least-squares fit of CPU seconds per step without the data = t0 + FLOPs per step / R, the CPU
   ms to render a window (data_cpu_s / windows of the cells that rendered), and the
   design's wall-time estimate with those numbers (scripts/biosignal-scaling-v2-grids.py --dry-run).

Rows (one per cell: CPU ms per step, achieved GFLOP/s per CPU-second and its share of the peak) are
appended to results/bench-biosignal-cells.csv. The machine is shared, so every figure is in CPU time
(wall time counts the other processes' share of the cores); the load average is recorded with each
row.

Usage: scripts/biosignal-scaling-v2-cost.py [--bin target/release/brainscale] [--batch 8] [--steps 200]
"""
import csv, json, os, re, resource, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def arg(name, default):
    return type(default)(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


BIN = arg("--bin", os.path.join(ROOT, "target/release/brainscale"))
BATCH = arg("--batch", 8)
STEPS = arg("--steps", 200)
RUNGS = arg("--rungs", 11)
ENV = dict(os.environ, OMP_NUM_THREADS="1", RAYON_NUM_THREADS="1")
SHAPE = {"eeg": (4, 1000, 36, 6 / 9), "accel": (3, 512, 12, 5 / 8)}

sys.argv += ["--dry-run"]
import importlib.util

spec = importlib.util.spec_from_file_location("design", os.path.join(ROOT, "scripts/biosignal-scaling-v2-grids.py"))
design = importlib.util.module_from_spec(spec)
spec.loader.exec_module(design)


def loadavg():
    return float(open("/proc/loadavg").read().split()[0])


def cpu_of(cmd):
    """CPU seconds (user + sys) a child command used, and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, env=ENV, check=True, capture_output=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, out


def main():
    tmp = tempfile.mkdtemp(prefix="biot-cost-")
    # 1. The one-thread matmul peak, in CPU time (the same libtorch as the binary).
    py = os.path.join(ROOT, ".venv/bin/python")
    peak = float(subprocess.run([py, "-c", """
import time, torch
torch.set_num_threads(1)
a, b = torch.randn(512, 512), torch.randn(512, 512)
a @ b
best = float("inf")
for _ in range(5):
    t = time.thread_time()
    for _ in range(5):
        c = a @ b
    best = min(best, (time.thread_time() - t) / 5)
print(2 * 512 ** 3 / best)
"""], env=ENV, check=True, capture_output=True, text=True).stdout)
    _, out = cpu_of([BIN, "bench-train", "--model", os.path.join(ROOT, "models/biot-d8-l1.toml"),
                     "--batch-size", str(BATCH), "--channels", "4", "--samples", "1000",
                     "--steps", "10", "--warmup", "3"])
    wall_peak = float(re.search(r"peak matmul ([0-9.eE+-]+) TFLOP/s", out).group(1)) * 1e12
    print(f"one-thread fp32 matmul peak (measured now): {peak / 1e9:.1f} GFLOP/s per CPU-second "
          f"({wall_peak / 1e9:.1f} GFLOP/s wall-clock, bench-train)")
    # 2. The sample of cells.
    rows = []
    for m, (c, l, tpw, kept) in SHAPE.items():
        _, _, ladders, used, _, _, _ = design.design(m, batch=BATCH, rungs=RUNGS)
        names = sorted(used, key=lambda k: design.n_per_token(*used[k][:2]))
        pick = [names[round(i * (len(names) - 1) / 4)] for i in range(5)]
        pick = [names[0]] + pick  # the first runs twice: one of the two renders the batches
        lines = [f'name = "cost-{m}"', "[axes]", "budgets = [" + ", ".join(
            f"{STEPS * BATCH * tpw * design.flops_per_token(*used[k], kept, tpw) * (1 + 1e-9 * i):.10e}"
            for i, k in enumerate(pick)) + "]"]
        paths = [os.path.join(ROOT, "models", k + ".toml") for k in pick]
        lines += ["models = [" + ", ".join(f'"{p}"' for p in sorted(set(paths))) + "]",
                  'precisions = ["fp32"]', "seeds = [0]"]
        for i, k in enumerate(pick):
            b = STEPS * BATCH * tpw * design.flops_per_token(*used[k], kept, tpw) * (1 + 1e-9 * i)
            lines += ["[[axes.ladders]]", f"budget = {b:.10e}", f'models = ["{paths[i]}"]']
        lines += ["[cell]", 'kind = "biosignal"', f'modality = "{m}"', "rate = 200.0",
                  f"batch_size = {BATCH}", "lr = 2e-3", "eval_windows = 128", "threads = 1",
                  "min_steps = 100", "[executor]", 'kind = "local"', "parallel = 1"]
        g = os.path.join(tmp, f"cost-{m}.toml")
        open(g, "w").write("\n".join(lines) + "\n")
        out = os.path.join(tmp, f"out-{m}")
        subprocess.run([BIN, "grid", "run", g, "--out", out], env=ENV, check=True, capture_output=True)
        for cid in sorted(os.listdir(os.path.join(out, "cells"))):
            r = json.load(open(os.path.join(out, "cells", cid, "row.json")))
            x = r["extra"]
            steps = x["steps"]
            per_step = r["flops"] / steps
            s = x["train_cpu_s"]
            rows.append({
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "modality": m, "model": os.path.basename(r["model"])[:-5], "n_params": r["n_params"],
                "batch": BATCH, "steps": steps, "train_s": round(x["train_s"], 3), "train_cpu_s": round(s, 3),
                "data_cpu_s": round(x["data_cpu_s"], 3),
                "cpu_ms_per_step": round(1e3 * s / steps, 3),
                "model_cpu_ms_per_step": round(1e3 * (s - x["data_cpu_s"]) / steps, 3),
                "gflops_per_step": per_step / 1e9,
                "achieved_gflops": round(r["flops"] / s / 1e9, 3), "peak_gflops": round(peak / 1e9, 2),
                "share_of_peak": round(r["flops"] / s / peak, 5), "batches_rendered": x["batches_rendered"],
                "load_avg": x["load_avg_end"],
            })
    path = os.path.join(ROOT, "results/bench-biosignal-cells.csv")
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        if new:
            w.writeheader()
        w.writerows(rows)
    for r in rows:
        print(f"{r['modality']:5} {r['model']:14} N={r['n_params']:7} {r['cpu_ms_per_step']:7.2f} CPU ms/step "
              f"({r['model_cpu_ms_per_step']:.2f} without the data) "
              f"{r['achieved_gflops']:6.2f} GFLOP/s = {100 * r['share_of_peak']:5.1f}% of peak"
              f"{'  (rendered ' + str(r['batches_rendered']) + ' batches)' if r['batches_rendered'] else ''}")
    # 3. t0 + F/R over every cell (CPU time without the data), rendering per window.
    render_ms = {}
    for m in SHAPE:
        rr = [r for r in rows if r["modality"] == m and r["batches_rendered"]]
        render_ms[m] = 1e3 * sum(r["data_cpu_s"] for r in rr) / sum(r["batches_rendered"] * BATCH for r in rr)
        print(f"{m}: rendering a window costs {render_ms[m]:.3f} CPU ms")
    n = len(rows)
    xs = [r["gflops_per_step"] * 1e9 for r in rows]
    ys = [r["model_cpu_ms_per_step"] / 1e3 for r in rows]
    mx, my = sum(xs) / n, sum(ys) / n
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    t0 = my - slope * mx
    print(f"fit: a step costs {1e3 * t0:.2f} CPU ms + its FLOPs at {1e-9 / slope:.1f} GFLOP/s "
          f"(load average {loadavg():.1f})")
    cmd = [sys.executable, os.path.join(ROOT, "scripts/biosignal-scaling-v2-grids.py"), "--dry-run",
           "--batch", str(BATCH), "--rungs", str(RUNGS), "--t0-ms", f"{1e3 * t0:.3f}",
           "--gflops", f"{1e-9 / slope:.2f}", "--render-ms-eeg", f"{render_ms['eeg']:.4f}",
           "--render-ms-accel", f"{render_ms['accel']:.4f}"]
    print(" ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd))
    print(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


if __name__ == "__main__":
    main()
