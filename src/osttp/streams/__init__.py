"""Learning while processing: a single pass over a never-ending, possibly drifting stream, scored
prequentially (each step predicted before it is learnt). See docs/streaming.md.

    source = with_drift(TaskSource(osttp.tasks.load("smnist-rows", "train")), "permute", every=500, seed=0)
    stream = DataStream(source, batch=1)
    summary = prequential(learner, stream, steps=20_000, window=1000)

    sources        TaskSource: a task's split, sequence after sequence, per lane
    drift          PermutedInputs, RemappedLabels, SwitchedTasks, with_drift
    stream         DataStream: B lanes stepped together; position() / seek()
    metrics        PrequentialMeter: cumulative, windowed, drift recovery
    prequential    Prequential (resumable loop), prequential(): the loop as a function
    learner_state  snapshot / restore of a learner's carried state (checkpoints mid-stream)
"""
from __future__ import annotations

from osttp.streams.drift import (PERMUTE_AXES, SCENARIOS, PermutedInputs, RemappedLabels, SwitchedTasks,
                                 with_drift)
from osttp.streams.learner_state import can_snapshot, restore, snapshot
from osttp.streams.metrics import PrequentialMeter
from osttp.streams.prequential import SCORES, Prequential, StreamDiverged, prequential, score_step
from osttp.streams.sources import ORDERS, Sequence, Source, TaskSource
from osttp.streams.stream import DataStream, Step

__all__ = ["DataStream", "ORDERS", "PERMUTE_AXES", "PermutedInputs", "Prequential", "PrequentialMeter",
           "RemappedLabels", "SCENARIOS", "SCORES", "Sequence", "Source", "Step", "StreamDiverged",
           "SwitchedTasks", "TaskSource", "can_snapshot", "prequential", "restore", "score_step", "snapshot",
           "with_drift"]
