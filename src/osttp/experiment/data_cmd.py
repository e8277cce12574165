"""`osttp data check` and `osttp data path`: the dataset files and their search path, printed
(osttp.tasks.data finds and verifies them; experiment.data_optional the optional datasets)."""
from __future__ import annotations

import os
import sys

from osttp.experiment.data_optional import optional_statuses
from osttp.tasks import data


def data_check() -> int:
    """Print each dataset file, where it was found and whether it verifies. 0 if all do, else 2."""
    print(f"searching: {os.pathsep.join(str(d) for d in data.search_dirs())}")
    statuses = data.file_statuses()
    for st in statuses:
        if st.path is None:
            print(f"MISSING  {st.relpath}  (not in any searched folder; {st.problem})")
        elif st.problem is not None:
            print(f"BAD      {st.relpath}  {st.path}: {st.problem}")
        else:
            print(f"ok       {st.relpath}  {st.path}")
    found, absent = optional_statuses()
    for st in found:
        print(f"{'ok' if st.problem is None else 'BAD':<8} {st.relpath}  {st.path}"
              + ("" if st.problem is None else f": {st.problem}"))
    if absent:
        print(f"optional, not present: {', '.join(absent)}")
    bad = sum(st.problem is not None for st in statuses)
    bad_optional = sum(st.problem is not None for st in found)
    if bad or bad_optional:
        print(f"{bad} of {len(statuses)} dataset files missing or invalid, {bad_optional} optional ones "
              f"invalid ({data.DOCS})")
        return 2
    print(f"all {len(statuses)} dataset files present and verified"
          + (f", and {len(found)} optional item(s)" if found else ""))
    return 0


def data_path() -> int:
    """Print the search path for dataset files."""
    env = os.environ.get(data.ENV_VAR)
    src = f"from ${data.ENV_VAR}" if env and env.strip() else f"default (${data.ENV_VAR} is not set)"
    print(f"dataset search path, {src}:")
    for d in data.data_dirs():
        print(f"  {d}{'' if d.is_dir() else '  (does not exist)'}")
    print("files looked for under each folder:")
    for relpath in data.FILES:
        print(f"  {relpath}")
    sys.stdout.flush()
    return 0
