"""How long a fresh host takes to compile a model's Inductor packages (what the app's engine build does once),
one after another and side by side, in one run.

    python bench/compile.py [--model enet-camvid] [--rounds 1] [--weights-dir ../shared/weights]

Each way compiles every Inductor engine the model's record lists into an empty cache folder, in a child process
of its own (so neither finds the other's in-memory state; Inductor's on-disk cache is pointed at the same
fresh folder too). "one after another" calls :func:`core.engines.compile_inductor` once per engine; "side by
side" once with all of them, as :func:`core.engines.build` does. The ways alternate over ``--rounds``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import sys
import weights
from core import engines
name, side_by_side = sys.argv[1], sys.argv[2] == "1"
jobs = engines.inductor_jobs(name, weights.create(name), weights.get_record(name).engines)
assert jobs, f"{name} lists no Inductor engine"
for batch in ([jobs] if side_by_side else [{key: job} for key, job in jobs.items()]):
    engines.compile_inductor(batch)
print(len(jobs))
"""


def compile_once(model: str, side_by_side: bool, weights_dir: str) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "CVHUB_CACHE_DIR": cache, "TORCHINDUCTOR_CACHE_DIR": str(Path(cache) / "inductor"),
               "CVHUB_WEIGHTS_DIR": weights_dir, "PYTHONPATH": str(REPO)}
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, model, "1" if side_by_side else "0"], env=env,
                             cwd=REPO, capture_output=True, text=True, check=True)
        return time.perf_counter() - t0, int(out.stdout.split()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="enet-camvid")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--weights-dir", default=str(REPO.parent / "shared" / "weights"))
    args = p.parse_args(argv)
    print(f"host: {os.cpu_count()} cores")
    times: dict[str, list[float]] = {"one after another": [], "side by side": []}
    for _ in range(args.rounds):
        for way in times:
            seconds, packages = compile_once(args.model, way == "side by side", args.weights_dir)
            times[way].append(seconds)
            print(f"{args.model}: {packages} packages {way}: {seconds:.1f} s", flush=True)
    median = {way: sorted(t)[len(t) // 2] for way, t in times.items()}
    print(f"side by side / one after another: {median['side by side'] / median['one after another']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
