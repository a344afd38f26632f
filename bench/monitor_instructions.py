"""The monitor's cost in instructions: the same arms as monitor_overhead.py, counted by valgrind.

    python bench/monitor_instructions.py [--batches 200] [--models mlp,cnn] [--arms bare,floor,memory]

Time on a shared VM moves by tens of percent between identical processes (the same bare loop
measured 1,345 and 1,862 us/batch in one hour here), so a 3% change to the monitor cannot be
seen in monitor_overhead.py's ratios without many repetitions. Instructions executed can: under
callgrind the count of one arm is the same from run to run, so one process per arm decides.

What it cannot see: cache misses, memory bandwidth and the device. An arm that executes 10% more
instructions may cost 20% more time where it also evicts the model from the cache; the time
ratio of monitor_overhead.py stays the target, this is the tool for finding where it goes.

Each arm is monitor_overhead.py's child process (same data, model, warm-up), run under
`valgrind --tool=callgrind --instr-atstart=no`; counting starts and stops exactly where that
script's clock does, through a 2-line C shim compiled here (callgrind's client requests).
The run is ~50x slower than native, so the monitor's time-based flush (every 0.2 s) would fire
every few batches: it is set to flush by rows only (every 256 batches; natively the 0.2 s
flush comes every ~130-500 batches on the spiral MLP). The dashboard arm is left out: its
writer thread is paced by time. Needs valgrind (with its headers, Debian's `valgrind`) and a C
compiler. Prints instructions per batch and the ratio to bare.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARMS = ("bare", "floor", "memory")
SHIM = """#include <valgrind/callgrind.h>
void start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void stop(void) { CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_DUMP_STATS_AT("measured"); }
"""


def child(arm: str, model: str, batches: int, shim: str) -> None:
    """In the process valgrind runs: monitor_overhead's child, counted between its clock marks."""
    import ctypes

    sys.path.insert(0, str(ROOT / "bench"))
    sys.path.insert(0, str(ROOT))
    import monitor_overhead

    import training_monitor

    training_monitor.FLUSH_SECONDS = float("inf")  # flush by rows, as a native run's pace would
    counter = ctypes.CDLL(shim)
    monitor_overhead.measure_start, monitor_overhead.measure_stop = counter.start, counter.stop
    result = monitor_overhead.child(arm, model, batches)
    print(result["batches"])


def build_shim(folder: Path) -> Path:
    source, library = folder / "callgrind_shim.c", folder / "callgrind_shim.so"
    source.write_text(SHIM)
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    return library


def count(arm: str, model: str, batches: int, shim: Path, folder: Path, timeout: float) -> tuple[int, int]:
    """(instructions in the measured part, batches trained in it)."""
    out = folder / f"{model}-{arm}.callgrind"
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}.%p",
               sys.executable, __file__, "--child", arm, model, str(batches), str(shim)]
    # PYTHONMALLOC=malloc: callgrind follows the system allocator; pymalloc's arenas confuse it.
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "PYTHONMALLOC": "malloc"})
    if done.returncode != 0:
        raise RuntimeError(f"{arm}/{model} failed:\n{done.stderr[-3000:]}")
    trained = int(done.stdout.strip().splitlines()[-1])
    totals = []
    for dump in folder.glob(f"{out.name}.*"):
        text = dump.read_text(errors="replace")
        if "Client Request: measured" in text.split("\nevents:", 1)[0]:  # the dump written at the stop mark
            totals += [int(line.split()[1]) for line in text.splitlines() if line.startswith("totals:")]
    if len(totals) != 1:
        raise RuntimeError(f"{arm}/{model}: expected one measured dump, found {len(totals)}")
    return totals[0], trained


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=200, help="batches per arm (the CNN's take ~20x longer)")
    parser.add_argument("--models", default="mlp")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="arms counted at once")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--child", nargs=4, metavar=("ARM", "MODEL", "BATCHES", "SHIM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        arm, model, batches, shim = args.child
        child(arm, model, int(batches), shim)
        return 0
    if args.batches < 1 or args.jobs < 1:
        parser.error("--batches and --jobs must be at least 1")
    missing = [tool for tool in ("valgrind", "cc") if shutil.which(tool) is None]
    if missing:
        print(f"needs {' and '.join(missing)} (Debian: apt-get install valgrind gcc)")
        return 2
    arms = [a for a in args.arms.split(",") if a]
    if "bare" not in arms or set(arms) - set(ARMS):
        parser.error(f"arms must include bare and be among {ARMS}")
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as tmp:
        folder = Path(tmp)
        shim = build_shim(folder)
        for model in args.models.split(","):
            jobs = {arm: (arm, model, args.batches, shim, folder, args.timeout) for arm in arms}
            with ThreadPoolExecutor(max_workers=args.jobs) as pool:
                results = dict(zip(jobs, pool.map(lambda job: count(*job), jobs.values())))
            base = results["bare"][0] / results["bare"][1]
            print(f"\n{model}: instructions per batch (callgrind), {results['bare'][1]} batches per arm")
            print(f"{'arm':10s} {'per batch':>12s} {'ratio':>7s}")
            for arm, (instructions, trained) in results.items():
                per_batch = instructions / trained
                print(f"{arm:10s} {per_batch:12,.0f} {per_batch / base:6.3f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
