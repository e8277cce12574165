"""The full FSDD conversion (3,000 recordings, 700 channels) timed, with peak memory; writes
results/convert_fsdd.json. Targets (issue 20): <= 10 min on 2 cores, RSS <= 2 GB.

    nice -n 10 python benchmarks/convert_fsdd.py --source $OSTTP_DATA/fsdd --out /tmp/sd-bench --jobs 2

--out must not hold an earlier build's work/ folder, or finished shards are reused and the time
measures a resumption (the script refuses such a folder unless --resume is given).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True, help="FSDD folder (a clone of free-spoken-digit-dataset)")
    ap.add_argument("--out", required=True, help="where the spike files go (a fresh folder)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--resume", action="store_true", help="allow reusing finished shards in --out/work")
    ap.add_argument("--result", default="results/convert_fsdd.json")
    args = ap.parse_args()
    out = Path(args.out)
    if (out / "work").exists() and not args.resume:
        print(f"{out / 'work'} exists: a timing would measure a resumption; use a fresh --out", file=sys.stderr)
        return 2
    from osttp.audio.spoken_digits import make_spoken_digits

    manifest = make_spoken_digits(args.source, out, jobs=args.jobs,
                                  progress=lambda d, t: print(f"{d}/{t}", flush=True) if d % 250 == 0 else None)
    load = os.getloadavg()
    row = {"command": " ".join(["python", *sys.argv]), "recordings": manifest["recordings"], "jobs": args.jobs,
           "wall_s": manifest["wall_s"], "peak_rss_mib": manifest["peak_rss_mib"], "load_average_1_5_15": load,
           "cpus": os.cpu_count(), "spikes": sum(f["spikes"] for f in manifest["files"].values()) // 2,
           "targets": {"wall_s": 600, "rss_mib_per_process": 2048}}
    Path(args.result).parent.mkdir(parents=True, exist_ok=True)
    Path(args.result).write_text(json.dumps(row, indent=2) + "\n")
    print(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
