"""Progress suits where it goes: a live bar on a terminal, plain complete lines in a log."""
from __future__ import annotations

import io

from osttp.experiment import progress as P


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_only_on_a_terminal_and_nothing_live_when_quiet() -> None:
    lines: list[str] = []
    assert type(P.make_progress(True, 10, 0, "x", lines.append, _Terminal())) is P.Progress
    assert isinstance(P.make_progress(False, 10, 0, "x", lines.append, io.StringIO()), P.LineProgress)
    bar = P.make_progress(False, 10, 0, "x", lines.append, _Terminal())
    assert isinstance(bar, P.BarProgress)
    bar.close()


def test_log_lines_are_complete_and_rate_limited() -> None:
    lines: list[str] = []
    prog = P.LineProgress(lines.append, total=1000, initial=0, desc="osttp s0 epoch 1/2", every_s=3600.0)
    for _ in range(1000):
        prog.update({"loss": "0.5000"})
    assert lines == []  # an hour has not passed: no line per batch
    prog = P.LineProgress(lines.append, total=4, initial=0, desc="osttp s0 epoch 1/2", every_s=0.0)
    for _ in range(4):
        prog.update({"loss": "0.5000", "accuracy": "0.7500"})
    assert len(lines) == 4 and "\r" not in "".join(lines)
    assert lines[-1].startswith("[osttp s0 epoch 1/2] batch 4/4 (100%)  loss 0.5000 accuracy 0.7500")
    prog.write("[osttp s0] epoch 1/2 ...")
    assert lines[-1] == "[osttp s0] epoch 1/2 ..."
