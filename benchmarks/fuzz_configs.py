"""Thousands of experiment files near the schema through `deepmimic sweep --check` (tests/test_config_fuzz.py's
generator, not derandomized): how many passed, how many ended in one line and exit 2, and any that did neither.

    .venv/bin/python benchmarks/fuzz_configs.py --examples 5000
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import tempfile
import time
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_config_fuzz import SPACE, check, mutate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=5000)
    parser.add_argument("--show", type=int, default=15, help="most common error lines shown")
    args = parser.parse_args()
    codes: collections.Counter = collections.Counter()
    lines: collections.Counter = collections.Counter()
    bad: list[str] = []

    @settings(max_examples=args.examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def one(data: st.DataObject) -> None:
        space = mutate(yaml.safe_load(yaml.safe_dump(SPACE)), data)
        with tempfile.TemporaryDirectory() as folder:
            try:
                code, err = check(space, Path(folder))
            except BaseException as e:  # noqa: BLE001 (counted: what the test would fail on)
                code, err = -1, f"{type(e).__name__}: {e}"
        codes[code] += 1
        if code == 2 and err.startswith("deepmimic: error: ") and err.count("\n") == 1:
            # one bucket a rule: the file's path, numbers and quoted values left out
            lines[re.sub(r"\S*space\.yaml( \(grid point [^)]*\))?|\d+|'[^']*'", "…", err.strip())[:110]] += 1
        elif code != 0:
            bad.append(f"{code}: {err.strip()[:300]} <- {space}")

    started = time.perf_counter()
    one()
    print(f"{sum(codes.values())} files in {time.perf_counter() - started:.0f} s: {codes[0]} passed, "
          f"{codes[2]} one line and exit 2, {len(bad)} neither")
    for line, n in lines.most_common(args.show):
        print(f"  {n:5d}  {line}")
    for b in bad[:10]:
        print("NEITHER", b)


if __name__ == "__main__":
    main()
