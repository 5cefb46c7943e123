"""Run every benchmark script (each measures its ratios side by side in one run) and print their JSON.

Usage: python benchmarks/run_all.py [--json]
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    as_json = "--json" in sys.argv
    results = {}
    for script in sorted(HERE.glob("bench_*.py")):
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(script), "--json"], capture_output=True, text=True
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("{")]
        try:
            results[script.stem] = json.loads(lines[-1]) if lines else {"error": proc.stderr[-500:]}
        except json.JSONDecodeError:
            results[script.stem] = {"error": "no JSON on stdout", "stdout": proc.stdout[-500:]}
        results[script.stem]["wall_s"] = round(time.perf_counter() - t0, 1)
        if not as_json:
            print(f"== {script.stem} ({results[script.stem]['wall_s']} s)")
            print(json.dumps(results[script.stem], indent=2)[:4000])
    if as_json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
