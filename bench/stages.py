"""Where an event's instructions go, stage by stage and detector by detector (issue 19).

    python -m bench.stages [--events 20000] [--keep DIR] [--detectors]

Every figure is a marginal count from callgrind, (I(2N) - I(N)) / N over the first N and 2N
events of the generated school day that `bench.callgrind` uses, so imports and set-up cancel
and the machine's load does not move it. Rows, each built on the one above:

- msgspec decode alone (the floor issue 19 compares the engine with);
- the shard's decoder: msgspec plus the contract's checks (`monitor.ingest.decode`);
- the shard with every detector off: redelivery window, reorder buffer, session table,
  places (GeoIP, networks), the access log, the account-activity note;
- the shard with every detector on (what `bench.callgrind --what engine` reports).

With `--detectors`, also each detector's own cost: every detector on minus every detector but
that one (two more callgrind runs per detector; about 20 minutes at N=20,000).
Needs valgrind (Debian package).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.callgrind import DECODE_ONLY, count, prepare  # noqa: E402
from detectors.registry import detector_ids  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000, help="N: the counts run over N and 2N events (default 20000)")
    parser.add_argument("--keep", type=Path, help="keep the generated files and callgrind outputs here")
    parser.add_argument("--detectors", action="store_true", help="also each detector's own cost (slow)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("stages: valgrind is not installed (apt-get install valgrind)")
    folder = args.keep or Path(tempfile.mkdtemp(prefix="pm-stages-"))
    folder.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    n = args.events
    small, large, env = prepare(folder, n, python)

    def marginal(name: str, argv: list[str]) -> float:
        a = count([*argv, str(small)], env, folder / f"{name}-n.out")
        b = count([*argv, str(large)], env, folder / f"{name}-2n.out")
        value = (b - a) / n
        print(f"  {name}: {value:,.0f}", file=sys.stderr, flush=True)
        return value

    engine = [python, "-m", "bench.engine", "--repeat", "1"]
    rows = [
        ("msgspec decode alone", marginal("msgspec", [python, "-c", DECODE_ONLY])),
        ("the shard's decoder (msgspec + contract checks)", marginal("decoder", [*engine, "--decode-only"])),
        ("the shard, every detector off", marginal("bare", [*engine, "--without", "all"])),
        ("the shard, every detector on", marginal("all", engine)),
    ]
    floor = rows[0][1]
    print(f"instructions per event, marginal over N={n:,} and 2N events of the generated day")
    print(f"{'':52} {'total':>8} {'step':>8} {'x decode':>9}")
    previous = 0.0
    for name, value in rows:
        print(f"{name:52} {value:8,.0f} {value - previous:+8,.0f} {value / floor:8.2f}x")
        previous = value
    if args.detectors:
        print("each detector: every detector on minus every detector but that one")
        for detector in detector_ids():
            cost = rows[-1][1] - marginal(f"without-{detector}", [*engine, "--without", detector])
            print(f"  {detector:50} {cost:+8,.0f}")


if __name__ == "__main__":
    main()
