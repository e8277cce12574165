"""The property tests of tests/test_fuzz.py at scale: thousands of generated flag values, config files,
damaged run directories and dataset files; prints how many of each and their outcomes.

    OMP_NUM_THREADS=1 python benchmarks/fuzz.py [--scale 25]

--scale multiplies the fast profile's example counts (100 flags, 60 configs, 40 run directories,
25 dataset-file pairs; scale 25 gives 5625 examples). Any violation of the property (an exit code
other than 0/2/3, a traceback, more than one error line, a half-written directory, a loader raising
anything but DataError) stops the run with hypothesis' minimal failing example.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=25.0)
    a = ap.parse_args()
    os.environ["OSTTP_FUZZ_SCALE"] = str(a.scale)  # read when test_fuzz is imported
    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT / "tests"))
    import fuzzing as F
    import test_fuzz as T

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "run"
        assert F.run_cli(["train", *F.BASE, "--rule", "osttp", "--out", str(template)])[0] == 0
        T.test_generated_flags()
        T.test_generated_config_files()
        T.test_damaged_run_directories(template_run=template)
        T.test_generated_dataset_files()
    counts = dict(F.COUNTS)
    counts["examples"] = sum(counts.get(k, 0) for k in ("flags", "config files", "run directories", "dataset files"))
    counts["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(counts, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
