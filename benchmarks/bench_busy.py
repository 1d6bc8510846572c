"""CPU cost per step on a busy machine (issue 33): roadmap-compact's training step (what ``roadmap adapt`` runs) and
inference batch (what ``roadmap extract`` runs), each in a fresh process, on a quiet machine and beside a CPU hog
(one busy process per core), under OpenMP wait policies and thread counts.  CPU seconds per step (user + system of
the worker) is what a shared machine pays; wall seconds per step is what the user waits.

    python benchmarks/bench_busy.py --steps 6
"""
import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys

WORK = r"""
import os, sys, time, resource, torch
from roadmap_cli.weights import load_model
kind, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if threads:
    torch.set_num_threads(threads)
torch.manual_seed(0)
m = load_model("roadmap-compact")
if kind == "train":
    m.train(); opt = torch.optim.AdamW(m.parameters(), 1e-4)
    x = torch.randn(4, 3, 256, 256); y = (torch.rand(4, 1, 256, 256) > 0.9).float()
    def step():
        opt.zero_grad(); loss = torch.nn.functional.binary_cross_entropy_with_logits(m(x), y); loss.backward(); opt.step()
else:
    m.eval(); x = torch.randn(2, 3, 512, 512)
    def step():
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
            m(x)
step()  # warm-up (kernel load, allocations)
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(steps):
    step()
r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
print(f"{cpu / steps:.3f} {(t1 - t0) / steps:.3f}")
"""


def hog(stop):
    while not stop.is_set():
        sum(range(10000))


def measure(kind, steps, threads, policy):
    """``policy``: "" (libgomp's default), PASSIVE / ACTIVE (OMP_WAIT_POLICY) or spin:N (GOMP_SPINCOUNT=N)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if policy.startswith("spin:"):
        env["GOMP_SPINCOUNT"] = policy[5:]
    elif policy:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", WORK, kind, str(steps), str(threads)], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--kinds", default="train,infer")
    ap.add_argument("--configs", default="2:,2:PASSIVE,2:ACTIVE,1:,2:spin:1000,2:spin:10000,2:spin:100000",
                    help="THREADS:POLICY,...")
    a = ap.parse_args()
    rows = []
    configs = [(int(c.split(":", 1)[0]), c.split(":", 1)[1]) for c in a.configs.split(",")]
    for kind in a.kinds.split(","):
        for busy in (False, True):
            stop, hogs = mp.Event(), []
            if busy:
                hogs = [mp.Process(target=hog, args=(stop,)) for _ in range(os.cpu_count() or 2)]
                for h in hogs:
                    h.start()
            try:
                for threads, policy in configs:
                    cpu, wall = measure(kind, a.steps, threads, policy)
                    rows.append({"work": kind, "machine": "busy" if busy else "quiet", "threads": threads,
                                 "wait": policy or "(default)", "cpu_s_per_step": cpu,
                                 "wall_s_per_step": wall})
                    print(json.dumps(rows[-1]), flush=True)
            finally:
                stop.set()
                for h in hogs:
                    h.join()


if __name__ == "__main__":
    main()
