"""Instructions per event, counted by callgrind: the figure that does not move with machine load.

    python -m bench.callgrind [--events 20000] [--what engine|decode|checks|both|all] [--keep DIR]

Runs `bench.engine` (every detector on, the demo's GeoIP databases and Tor list, as bench/run.py)
under `valgrind --tool=callgrind` over the first N and the first 2N events of a generated school
day, and prints the marginal count, (I(2N) - I(N)) / N: imports, set-up and warm-up cancel.
`--what decode` counts msgspec decoding the same lines into `PortalEvent` alone, the floor the
engine is compared with (issue 19: engine at most 3.0x decoding). `--what checks` counts also
`EventDecoder.decode` alone (set up as a shard does) over the same lines and prints what it adds
to msgspec's decoding: the contract's checks, the default `action`, `at` from `ts`, the pupil
paths. `both` is decode and engine; `all` is decode, checks and engine. Needs valgrind (Debian
package).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLLECTED = re.compile(rb"Collected\s*:\s*(\d+)")

DECODE_ONLY = """
import sys, msgspec
from monitor.contract.events import PortalEvent
decode = msgspec.json.Decoder(PortalEvent).decode
n = 0
with open(sys.argv[1], 'rb') as f:
    for line in f:
        decode(line); n += 1
print(n)
"""

# EventDecoder.decode as `monitor.service.shards.build_shard` sets it up (default settings).
DECODER_ONLY = """
import sys
from monitor.ingest.decode import EventDecoder
from monitor.places.networks import NetworkMap
from monitor.service.config import load_settings
settings = load_settings(None, environ={})
decode = EventDecoder(NetworkMap(settings.networks.allowlist), settings.engine.earliest_event_time,
                      settings.pupils.paths).decode
n = 0
with open(sys.argv[1], 'rb') as f:
    for line in f:
        decode(line); n += 1
print(n)
"""


def compile_sources(python: str) -> None:
    """Write every module's bytecode first. Without it (PYTHONDONTWRITEBYTECODE=1, as on the
    development machines) each run compiles the project's modules again, about 557 million
    instructions: the same in both runs of a pair, so it cancels, until one run finds bytecode
    that something else wrote and the other does not: one such pair gave 35,286 instructions
    per event instead of about 60,500. (Do not edit the tree while a count runs, for the same
    reason.) `compileall` writes the bytecode whatever PYTHONDONTWRITEBYTECODE says."""
    subprocess.run([python, "-m", "compileall", "-q", "monitor", "detectors", "sinks", "bench"], cwd=ROOT,
                   check=True, capture_output=True)


def count(argv: list[str], env: dict[str, str], out: Path) -> int:
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True)
    found = COLLECTED.search(done.stderr)
    if done.returncode != 0 or not found:
        sys.exit(f"callgrind: {' '.join(argv)} failed (exit {done.returncode}):\n{done.stderr.decode(errors='replace')[-2000:]}")
    return int(found.group(1))


def prepare(folder: Path, n: int, python: str) -> tuple[Path, Path, dict[str, str]]:
    """The first N and 2N events of the generated day, as two files in `folder`; the
    environment the counted runs get (fixed hash seed, the demo GeoIP databases and Tor list);
    and the project's bytecode written (`compile_sources`)."""
    day = folder / "day.jsonl"
    subprocess.run([python, "bench/generate.py", "--accounts", str(max(1000, n // 10)), "--events", str(2 * n),
                    "--days", "1", "--seed", "7", "--out", str(day)], cwd=ROOT, check=True, capture_output=True)
    lines = day.read_bytes().splitlines(keepends=True)
    small, large = folder / "n.jsonl", folder / "2n.jsonl"
    small.write_bytes(b"".join(lines[:n]))
    large.write_bytes(b"".join(lines[: 2 * n]))
    sys.path.insert(0, str(ROOT))
    from bench.locations import location_environment

    env = {**os.environ, "PYTHONHASHSEED": "0", **location_environment(folder / "geo")}
    compile_sources(python)
    return small, large, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000, help="N: the counts run over N and 2N events (default 20000)")
    parser.add_argument("--what", choices=("engine", "decode", "checks", "both", "all"), default="both")
    parser.add_argument("--keep", type=Path, help="keep the generated files and callgrind outputs here")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("callgrind: valgrind is not installed (apt-get install valgrind)")
    folder = args.keep or Path(tempfile.mkdtemp(prefix="pm-callgrind-"))
    folder.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    n = args.events
    small, large, env = prepare(folder, n, python)
    results = {}
    if args.what in ("decode", "checks", "both", "all"):
        a = count([python, "-c", DECODE_ONLY, str(small)], env, folder / "decode-n.out")
        b = count([python, "-c", DECODE_ONLY, str(large)], env, folder / "decode-2n.out")
        results["decode"] = (b - a) / n
    if args.what in ("checks", "all"):
        a = count([python, "-c", DECODER_ONLY, str(small)], env, folder / "decoder-n.out")
        b = count([python, "-c", DECODER_ONLY, str(large)], env, folder / "decoder-2n.out")
        results["EventDecoder.decode"] = (b - a) / n
        results["checks"] = results["EventDecoder.decode"] - results["decode"]
    if args.what in ("engine", "both", "all"):
        a = count([python, "-m", "bench.engine", str(small), "--repeat", "1"], env, folder / "engine-n.out")
        b = count([python, "-m", "bench.engine", str(large), "--repeat", "1"], env, folder / "engine-2n.out")
        results["engine"] = (b - a) / n
    for what, per_event in results.items():
        print(f"{what}: {per_event:,.0f} instructions per event (marginal, N={n:,})")
    if "engine" in results:
        print(f"engine / decode: {results['engine'] / results['decode']:.2f}x")
    if args.keep is None:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
