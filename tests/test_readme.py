"""The README's Python example runs as written: its code block, with only the budget made smaller
(three substitutions, each checked to occur once, so the README and this test cannot drift apart)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from osttp.tasks import data

README = Path(__file__).resolve().parents[1] / "README.md"
DATA = os.environ.get("OSTTP_DATA", "")
needs_mnist = pytest.mark.skipif(not (DATA and all((Path(DATA) / f).is_file() for f in data.FILES)),
                                 reason="the README example reads MNIST: set OSTTP_DATA (docs/data.md)")
SMALLER = {'"train", limit=10000)': '"train", limit=256)', 'osttp.tasks.load("smnist-rows", "valid")':
           'osttp.tasks.load("smnist-rows", "valid", limit=256)', "range(2)": "range(1)"}


def readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) == 1, "the README has one Python example"
    return blocks[0]


@needs_mnist
@pytest.mark.slow
def test_the_readme_example_runs_as_written(capsys):
    code = readme_example()
    for old, new in SMALLER.items():
        assert code.count(old) == 1, old
        code = code.replace(old, new)
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    line = capsys.readouterr().out.strip().splitlines()[-1]
    accuracy = float(re.fullmatch(r"valid accuracy ([0-9.]+)", line).group(1))
    assert 0.0 <= accuracy <= 1.0


def test_the_readme_example_defines_everything_it_uses():
    code = readme_example()
    for name in ("stream", "learner", "train", "valid", "net", "opt"):
        assert re.search(rf"^\s*{name} = |for .*\b{name}\b.* in ", code, re.M), name
