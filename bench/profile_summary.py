"""Summarise a py-spy profile (`py-spy record -f raw`): where the time goes, as plain text.

    py-spy record -f raw -o out.txt -- portal-monitor replay day.jsonl --alerts-out /dev/null
    python bench/profile_summary.py out.txt [--top 25] [--under Shard.process]

Prints each function's share of samples inclusive (the function and what it called) and
exclusive (its own lines), so a hot spot and the path to it are both visible.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frames(stack: str) -> list[str]:
    names = []
    for frame in stack.split(";"):
        match = FRAME.match(frame.strip())
        if match:
            path = match.group("file")
            short = "/".join(path.split("/")[-2:])
            names.append(f"{match.group('func')} ({short})")
        else:
            names.append(frame.strip())
    return names


def summarise(path: str, top: int, under: str | None) -> str:
    inclusive: Counter[str] = Counter()
    exclusive: Counter[str] = Counter()
    total = 0
    with open(path) as source:
        for line in source:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            names = frames(stack)
            if under:
                hits = [i for i, name in enumerate(names) if under in name]
                if not hits:
                    continue
                names = names[hits[0]:]
            n = int(count)
            total += n
            for name in set(names):
                inclusive[name] += n
            exclusive[names[-1]] += n
    if not total:
        return "no samples"
    lines = [f"{total} samples" + (f" under {under}" if under else "")]
    lines.append("\ninclusive (function and callees):")
    for name, n in inclusive.most_common(top):
        lines.append(f"  {100 * n / total:5.1f}%  {name}")
    lines.append("\nexclusive (own lines):")
    for name, n in exclusive.most_common(top):
        lines.append(f"  {100 * n / total:5.1f}%  {name}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", help="raw (collapsed stack) output of py-spy record -f raw")
    parser.add_argument("--top", type=int, default=25, help="functions to list (default 25)")
    parser.add_argument("--under", help="only samples below a frame whose name contains this, e.g. Shard.process")
    args = parser.parse_args()
    print(summarise(args.profile, args.top, args.under))


if __name__ == "__main__":
    main()
