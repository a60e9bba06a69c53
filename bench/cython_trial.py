"""What compiling the hot path with Cython gives, measured (issue 19's first candidate).

    python -m bench.cython_trial [--events 40000] [--keep DIR]

Copies this tree (the files git knows, as they are now) to a scratch folder, counts the engine's
instructions per event there with `bench.callgrind` as plain Python, compiles the per-event
modules below with Cython as they are (plain `.py`, no `cdef`, annotations not used as C types,
so behaviour is exactly the Python's), checks that the compiled modules are the ones imported,
and counts again. Nothing in this tree is built or changed. Needs valgrind, gcc, the Python
headers and Cython (`pip install 'Cython>=3.0.11'`); the build takes a few CPU-minutes.

Measured 2026-12-03 (docs/performance.md, "Compiling the hot path"): 63,358 instructions per
event as Python, 62,416 compiled (-1.5%). Not adopted: see there.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Every module an event passes through: decoding, the session table, the shard and its
# findings, the network stage, places, and every detector.
COMPILED = [
    "monitor/ingest/decode.py",
    "monitor/state/sessions.py",
    "monitor/state/interning.py",
    "monitor/engine/shard.py",
    "monitor/engine/findings.py",
    "monitor/engine/network_stage.py",
    "monitor/places/geo.py",
    "monitor/places/networks.py",
    "monitor/places/shared_networks.py",
    "monitor/places/risky.py",
    "detectors/base.py",
    "detectors/_places.py",
    "detectors/brute_force.py",
    "detectors/bulk_record_access.py",
    "detectors/dormant_account.py",
    "detectors/dormant_account_login.py",
    "detectors/impossible_travel.py",
    "detectors/new_country.py",
    "detectors/password_spray.py",
    "detectors/revoked_access_use.py",
    "detectors/risky_network.py",
    "detectors/session_left_open.py",
    "detectors/simultaneous_logins.py",
    "detectors/unlinked_pupil_access.py",
]

SETUP = """
from Cython.Build import cythonize
from setuptools import setup
setup(
    ext_modules=cythonize(
        {modules!r},
        build_dir="build/cython",
        quiet=True,
        # annotation_typing off: `x: int` stays any Python int, as in the .py; binding keeps
        # Python signatures and introspection.
        compiler_directives={{"language_level": 3, "annotation_typing": False, "binding": True}},
    )
)
"""

RESULT = re.compile(r"engine: ([\d,]+) instructions per event")


def engine_instructions(tree: Path, events: int) -> int:
    done = subprocess.run(
        [sys.executable, "-m", "bench.callgrind", "--events", str(events), "--what", "engine"],
        cwd=tree, capture_output=True, text=True,
    )
    found = RESULT.search(done.stdout)
    if done.returncode != 0 or not found:
        sys.exit(f"cython_trial: bench.callgrind failed in {tree}:\n{done.stdout}{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=40_000, help="N for bench.callgrind (default 40000)")
    parser.add_argument("--keep", type=Path, help="build the copy here and keep it (default: a temporary folder)")
    args = parser.parse_args()
    try:
        import Cython  # noqa: F401
    except ImportError:
        sys.exit("cython_trial: Cython is not installed in this environment: pip install 'Cython>=3.0.11'")
    for tool in ("valgrind", "gcc"):
        if shutil.which(tool) is None:
            sys.exit(f"cython_trial: {tool} is not installed")
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="pm-cython-"))
    tree = scratch / "tree"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tree / name)
    print(f"copied the tree to {tree}; counting the engine as Python ...", file=sys.stderr, flush=True)
    python = engine_instructions(tree, args.events)
    (tree / "setup.py").write_text(SETUP.format(modules=COMPILED))
    print("compiling with Cython ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "setup.py", "--quiet", "build_ext", "--inplace"], cwd=tree, check=True,
                   capture_output=True)
    loaded = subprocess.run(
        [sys.executable, "-c", "import monitor.engine.shard as m, detectors.new_country as d; print(m.__file__, d.__file__)"],
        cwd=tree, capture_output=True, text=True, check=True,
    ).stdout.split()
    if not all(path.endswith(".so") and path.startswith(str(tree)) for path in loaded):
        sys.exit(f"cython_trial: the compiled modules are not the ones imported: {loaded}")
    print("counting the engine compiled ...", file=sys.stderr, flush=True)
    compiled = engine_instructions(tree, args.events)
    print(f"engine, every detector on, N={args.events:,}: {python:,} instructions per event as Python, "
          f"{compiled:,} compiled ({(compiled - python) / python:+.1%})")


if __name__ == "__main__":
    main()
