"""Start-up cost of the command and the library: `wif --help`, `import wif_core`, and what each imports.

Each is timed as a fresh process (wall clock, median of ``reps``) against a bare `python -c pass`
in the same run, so the overhead wif adds is read off side by side on a shared machine.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time

from bench.common import machine, write_section

CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "wif --help": [shutil.which("wif") or "wif", "--help"],
    "import wif_core": [sys.executable, "-c", "import wif_core"],
    "import wif_core; wif_core.open_store": [sys.executable, "-c", "import wif_core; wif_core.open_store"],
}
HEAVY = ("torch", "sklearn", "numpy", "pandas", "duckdb", "streamlit")


def _seconds(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - t


def _imported(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"import sys\n{code}\nprint(' '.join(sys.modules))"],
        check=True,
        capture_output=True,
        text=True,
    )
    mods = set(out.stdout.split())
    return [m for m in HEAVY if m in mods]


def main(reps: int = 15) -> dict:
    load = os.getloadavg()[0]
    for argv in CASES.values():  # warm the file cache
        _seconds(argv)
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(reps):  # interleaved, so a burst of load hits every case alike
        for name, argv in CASES.items():
            times[name].append(_seconds(argv))
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    heavy = {
        "wif --help": _imported("from wif_core.cli import build_parser\nbuild_parser().format_help()"),
        "import wif_core": _imported("import wif_core"),
        "import wif_core; wif_core.open_store": _imported("import wif_core; wif_core.open_store"),
    }
    rows = "\n".join(
        f"| `{name}` | {medians[name]:.3f} s | {medians[name] - medians['python -c pass']:+.3f} s | "
        f"{', '.join(heavy.get(name, [])) or '—'} |"
        for name in CASES
    )
    write_section(
        "startup",
        f"""
## Start-up (issue 11)

Machine: {machine()}; load average {load:.1f} when it started (other work running: see the session note).
Command: `python -m bench.run startup`: each command as a fresh process, median of {reps} runs interleaved with
a bare `python -c pass`. Goal: `wif --help` under 0.2 s; `import wif_core` imports no torch.

| command | median wall | over bare Python | heavy packages imported |
| --- | --- | --- | --- |
{rows}
""",
    )
    return {"medians": medians, "heavy": heavy, "load": load}


if __name__ == "__main__":
    print(main())
