"""Run configurations: the declared schema, checking, merging and resolution.

A configuration is a nested dict of plain values, one table per concern:

    [task]            name, and [task.params] passed to osttp.tasks.load
    [model]           cell, hidden, recurrent, dtype, feedback_scale, [model.cell_options]
    [train]           rule, seed, epochs, batch_size, optimizer, lr, ... (how parameters are learned)
    [eval]            batch_size, max_valid_batches, max_test_batches, test_params
    [hardware]        synapse, update, w_range, readout_w_range, n_pairs, accumulator_threshold, max_pulses,
                      bits, io_bits, train_reads, eval_reads, drift_eval (simulated memristive synapses)
    [run]             device, checkpoint_every, threads (how the process runs; may change on --resume)
    [compare]         rules, seeds (only for `osttp compare` / `osttp demo`)
    [stream]          source, drift, steps, lanes, metric window, ... (only for `osttp stream`)

`SCHEMA` declares every key once: its kind, default, bounds, choices, and the command-line flag that
sets it (with its help text and the commands that offer it); the argparse options of osttp.experiment.cli
are built from it. Precedence: defaults < config file < command-line flags (`resolve`). Optional keys
hold None when absent; TOML has no null, so the writer leaves them out and the reader puts None back.
docs/cli.md lists every key.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Mapping

from osttp import checks
from osttp.cells import CELLS
from osttp.errors import OsttpError
from osttp.experiment.backend import synapse_names
from osttp.experiment.consistency import check_consistency, hardware_optimizer
from osttp.experiment.lr_schedule import LR_SCHEDULES
from osttp.experiment.optimizers import OPTIMIZERS
from osttp.hardware import READ_NOISE_MODES, SCHEMES
from osttp.network import READOUTS
from osttp.registry import Registry
from osttp.rules import PRESETS
from osttp.streams import ORDERS, PERMUTE_AXES, SCENARIOS, SCORES
from osttp.tasks.base import SPLITS
from osttp.tasks.metrics import DECISIONS

SEED_MAX = 2**63 - 1  # seeds are signed 64-bit integers (torch.Generator.manual_seed, derived seeds)
TRAINING = frozenset({"train", "compare"})  # commands that take the experiment flags
EVERY_RUN = frozenset({"train", "compare", "demo"})
STREAMING = TRAINING | {"stream"}  # keys `osttp stream` shares with training (docs/streaming.md)
STREAM_ONLY = frozenset({"stream"})


@dataclass(frozen=True)
class Names:
    """The valid values of a key, read when a value is checked (so a name registered later is valid):
    `what` names the family in the error, `names` lists its members."""

    what: str
    names: Callable[[], Sequence[str]]

    @staticmethod
    def of(registry: Registry[Any], what: str | None = None) -> "Names":
        return Names(what or registry.kind, registry.names)


@dataclass(frozen=True)
class Key:
    """One config key: its kind, default and bounds, and its command-line flag.

    kind: "int" | "float" | "bool" | "str" | "ints" (list of int) | "strs" | "table" (free-form,
    checked by whoever consumes it: the task loader or the cell factory; its flag takes KEY=VALUE
    and may repeat)."""

    kind: str
    default: Any = None
    lo: float | None = None
    hi: float | None = None  # inclusive upper bound
    choices: tuple[str, ...] | Names | None = None  # Names: the members of a registry, read live
    optional: bool = False  # None (absent) is a valid value
    nonempty: bool = False  # for lists
    unique: bool = False  # for lists: no value twice
    strict: bool = False  # lo is exclusive (a learning rate must be > 0)
    flag: str | None = None  # e.g. "--lr"; None: config file only
    help: str | None = None
    metavar: str | None = None
    commands: frozenset[str] = TRAINING

    def allowed(self) -> tuple[str, ...] | None:
        """The valid values of a "str"/"strs" key now, or None when any string is valid."""
        if isinstance(self.choices, Names):
            return tuple(self.choices.names())
        return self.choices


SCHEMA: dict[str, dict[str, Key]] = {
    "task": {
        # required in the end; checked by `require_run_keys`
        "name": Key("str", optional=True, commands=STREAMING, flag="--task", metavar="T",
                    help="task name (osttp list)"),
        "params": Key("table", {}, commands=STREAMING, flag="--task-param", metavar="KEY=VALUE",
                      help="task parameter, repeatable (e.g. limit=1000, label=last)"),
    },
    "model": {
        "cell": Key("str", "snu", choices=Names.of(CELLS), commands=STREAMING, flag="--cell", metavar="C",
                    help="cell kind (osttp list)"),
        "hidden": Key("ints", [256, 256], lo=1, nonempty=True, commands=STREAMING, flag="--hidden", metavar="N,N",
                      help="hidden layer sizes, e.g. 256,256"),
        "recurrent": Key("bool", False, commands=STREAMING, flag="--recurrent",
                         help="recurrent weights H in every hidden layer"),
        "dtype": Key("str", "float32", choices=("float32", "float64"), commands=STREAMING, flag="--dtype",
                     help="precision of parameters, states and data"),
        "feedback_scale": Key("float", None, lo=0.0, optional=True, commands=STREAMING, flag="--feedback-scale",
                              metavar="X",
                              help="B_l ~ U(-X, X) instead of the default U(-sqrt(6/n), sqrt(6/n))"),
        "cell_options": Key("table", {}, commands=STREAMING, flag="--cell-option", metavar="KEY=VALUE",
                            help="cell hyperparameter, repeatable (e.g. d=0.4, g=identity)"),
        "readout": Key("str", "linear", choices=Names.of(READOUTS), commands=STREAMING, flag="--readout",
                       help="readout kind: linear, or integrator o_t = kappa o_{t-1} + V y_t + c"),
        "kappa": Key("float", None, lo=0.0, optional=True, commands=STREAMING, flag="--kappa", metavar="K",
                     help="leak of the integrator readout, in [0, 1) (default 0.9)"),
        "init_rate": Key("float", None, lo=0.0, strict=True, optional=True, commands=STREAMING, flag="--init-rate",
                         metavar="R",
                         help="scale each spiking layer's input weights at init so it fires at rate R on a "
                              "training batch (osttp.calibration); default: Glorot as is"),
    },
    "train": {
        # required for train; compare sets it per run
        "rule": Key("str", optional=True, choices=Names.of(PRESETS, "rule"), flag="--rule", metavar="R",
                    help="learning rule (osttp list)", commands=frozenset({"train", "stream"})),
        "seed": Key("int", 0, lo=0, hi=SEED_MAX, flag="--seed", metavar="S", help="weights and data order seed",
                    commands=frozenset({"train", "stream"})),
        "epochs": Key("int", 10, lo=1, flag="--epochs", metavar="N", help="passes over the training split"),
        "batch_size": Key("int", 64, lo=1, flag="--batch-size", metavar="B", help="training sequences per batch"),
        "optimizer": Key("str", "adam", choices=Names.of(OPTIMIZERS), commands=STREAMING, flag="--optimizer",
                         help="torch optimizer (simulated synapses: sgd)"),
        "lr": Key("float", 1e-3, lo=0.0, strict=True, commands=STREAMING, flag="--lr", metavar="X",
                  help="learning rate"),
        "momentum": Key("float", 0.0, lo=0.0, commands=STREAMING, flag="--momentum", metavar="X", help="SGD momentum"),
        "weight_decay": Key("float", 0.0, lo=0.0, commands=STREAMING, flag="--weight-decay", metavar="X",
                            help="L2 weight decay"),
        "schedule": Key("str", "sequence-end", commands=STREAMING, flag="--schedule", metavar="S",
                        help="sequence-end | per-step | every-<k> (when updates are applied)"),
        "window": Key("int", None, lo=1, optional=True, commands=STREAMING, flag="--window", metavar="K",
                      help="tbptt window (default 10)"),  # tbptt only
        "lr_schedule": Key("str", "constant", choices=Names.of(LR_SCHEDULES), flag="--lr-schedule", metavar="S",
                           help="learning rate over the run: constant | cosine (to 0 at the last batch)"),
        "hidden_lr_scale": Key("float", 1.0, lo=0.0, strict=True, commands=STREAMING, flag="--hidden-lr-scale", metavar="S",
                               help="the hidden layers learn at lr * S, the readout at lr (default 1)"),
        "signal_options": Key("table", {}, commands=STREAMING, flag="--signal-option", metavar="KEY=VALUE",
                              help="learning-signal parameter of an online rule, repeatable (e.g. beta=1 for "
                                   "osttp-local)"),
        "rate_reg": Key("float", 0.0, lo=0.0, flag="--rate-reg", metavar="X",
                        help="firing-rate regulariser X * B * sum_i (batch-mean rate_i - rate_target)^2 per "
                             "step and hidden layer, added to every rule's objective (0: off)"),
        "rate_target": Key("float", 0.1, lo=0.0, flag="--rate-target", metavar="R",
                           help="target rate of the firing-rate regulariser (default 0.1)"),
        "shuffle": Key("bool", True, flag="--shuffle",
                       help="shuffle training sequences each epoch (order from seed and epoch)"),
        "max_batches": Key("int", None, lo=1, optional=True, flag="--max-train-batches", metavar="N",
                           help="training batches per epoch (default: all)"),
    },
    "eval": {
        "batch_size": Key("int", 256, lo=1, flag="--eval-batch-size", metavar="B",
                          help="sequences per validation/test batch"),
        "max_valid_batches": Key("int", None, lo=1, optional=True, flag="--max-valid-batches", metavar="N",
                                 help="evaluate on the first N valid batches only"),
        "max_test_batches": Key("int", None, lo=1, optional=True, flag="--max-test-batches", metavar="N",
                                help="evaluate on the first N test batches only"),
        "test_params": Key("str", "final", choices=("final", "best-valid"), flag="--test-params",
                           help="parameters the test metric is measured with (default final)"),
        "decision": Key("str", "last", choices=DECISIONS, flag="--decision",
                        help="class of a sequence from its outputs: at the last supervised step, or their "
                             "mean or max over the supervised steps (classification tasks)"),
    },
    "hardware": {
        # float: no hardware. Otherwise the weight matrices live in simulated devices (osttp.hardware)
        "synapse": Key("str", "float", choices=Names("synapse", synapse_names), flag="--synapse",
                       help="weights in simulated devices (default float: none); see docs/hardware.md"),
        "update": Key("str", "mixed-precision", choices=Names.of(SCHEMES), flag="--update",
                      help="device update scheme (default mixed-precision)"),
        # per-layer range w_max = w_range * max|W_init| (HardwareTraining's auto_w_max); 0: the device's w_max
        "w_range": Key("float", 4.0, lo=0.0, flag="--w-range", metavar="K",
                       help="device range per layer w_max = K * max|W_init| (default 4; 0: the device's own w_max)"),
        "readout_w_range": Key("float", None, lo=0.0, strict=True, optional=True, flag="--readout-w-range",
                               metavar="K", help="the readout's range factor instead of w_range (its weights "
                                                 "grow far beyond their initial scale; default: w_range)"),
        "n_pairs": Key("int", 1, lo=1, hi=64, flag="--n-pairs", metavar="N",
                       help="differential PCM pairs per synapse: N times finer pulses, same range (default 1)"),
        "accumulator_threshold": Key("float", 1.0, lo=0.0, strict=True, flag="--accumulator-threshold",
                                     metavar="X", help="mixed-precision: fire once |chi| >= X pulses "
                                                       "(default 1; 0.5 rounds to the nearest pulse)"),
        "max_pulses": Key("int", 0, lo=0, flag="--max-pulses", metavar="N",
                          help="mixed-precision: pulse budget per synapse and update (default 0: none)"),
        "bits": Key("int", 4, lo=2, flag="--bits", metavar="N",
                    help="levels of --synapse quantized (default 4)"),  # quantized only
        "io_bits": Key("int", 0, lo=0, flag="--io-bits", metavar="N",
                       help="DAC/ADC resolution of every crossbar, in training and evaluation (0: exact "
                            "products, the default; 8: the usual 8-bit converters)"),
        "train_reads": Key("str", "auto", choices=READ_NOISE_MODES, flag="--train-reads", metavar="M",
                           help="read noise in training (HardwareTraining's read_noise; default auto)"),
        "eval_reads": Key("int", 1, lo=1, hi=64, flag="--eval-reads", metavar="K",
                          help="evaluation: every crossbar product the mean of K reads (default 1)"),
        "drift_eval": Key("bool", True, flag="--drift-eval",
                          help="with hardware: test metric from 1 s to 1 month after programming, drift.json/.png "
                               "(default on)"),
    },
    "run": {
        "device": Key("str", "auto", flag="--device", metavar="D", commands=EVERY_RUN | {"stream"},
                      help="auto (CUDA when present) | cpu | cuda | cuda:N"),
        "checkpoint_every": Key("int", 0, lo=0, flag="--checkpoint-every", metavar="N",
                                help="also checkpoint every N training batches (default 0: epoch ends only)"),
        "threads": Key("int", 0, lo=0, flag="--threads", metavar="N", commands=EVERY_RUN | {"stream"},
                       help="torch CPU threads (default 0: torch's choice)"),
        "nproc": Key("int", 1, lo=1, hi=256, flag="--nproc", metavar="N", commands=frozenset({"train"}),
                     help="data-parallel processes launched here, as torchrun --nproc-per-node N would "
                          "(docs/distributed.md); under torchrun its process count is used"),
    },
    "compare": {
        "rules": Key("strs", ["osttp", "bptt"], choices=Names.of(PRESETS, "rule"), nonempty=True, unique=True,
                     flag="--rules", metavar="A,B", help="rules to compare", commands=frozenset({"compare"})),
        "seeds": Key("ints", [0], lo=0, hi=SEED_MAX, nonempty=True, unique=True, flag="--seeds", metavar="S,S",
                     help="seeds for every rule", commands=frozenset({"compare"})),
    },
    "stream": {  # `osttp stream`: prequential learning on a stream (docs/streaming.md)
        "split": Key("str", "train", choices=SPLITS, flag="--split", commands=STREAM_ONLY,
                     help="split of the task the stream plays (default train)"),
        "steps": Key("int", 20000, lo=1, flag="--steps", metavar="N", commands=STREAM_ONLY,
                     help="time steps to learn from (per lane); may grow on --resume"),
        "lanes": Key("int", 1, lo=1, flag="--lanes", metavar="B", commands=STREAM_ONLY,
                     help="parallel streams, the learner's batch size (default 1)"),
        "seed": Key("int", None, lo=0, optional=True, flag="--stream-seed", metavar="S", commands=STREAM_ONLY,
                    help="sequence order and drift draws (default: --seed)"),
        "order": Key("str", "shuffle", choices=ORDERS, flag="--order", commands=STREAM_ONLY,
                     help="each pass over the split in a seeded shuffle (default) or in file order"),
        "reset": Key("bool", False, flag="--reset-at-boundary", commands=STREAM_ONLY,
                     help="zero states and traces when a sequence ends (default off: one continuous signal)"),
        "drift": Key("str", "none", choices=Names.of(SCENARIOS), flag="--drift", commands=STREAM_ONLY,
                     help="drift scenario: none, permute (inputs), remap (labels), switch (task)"),
        "drift_every": Key("int", None, lo=1, optional=True, flag="--drift-every", metavar="K",
                           commands=STREAM_ONLY, help="sequences per drift phase (per lane)"),
        "permute_axis": Key("str", "auto", choices=PERMUTE_AXES, flag="--permute-axis", commands=STREAM_ONLY,
                            help="what permute reorders: input channels, or time steps (auto: steps for 1 input)"),
        "switch_task": Key("str", None, optional=True, flag="--switch-task", metavar="T", commands=STREAM_ONLY,
                           help="the task odd phases of drift switch play (same input/output widths)"),
        "switch_params": Key("table", {}, flag="--switch-param", metavar="KEY=VALUE", commands=STREAM_ONLY,
                             help="parameter of --switch-task, repeatable"),
        "score": Key("str", "supervised", choices=SCORES, flag="--score", commands=STREAM_ONLY,
                     help="steps scored: every supervised step, or the last supervised step of each sequence"),
        "window": Key("int", 1000, lo=1, flag="--metric-window", metavar="N", commands=STREAM_ONLY,
                      help="scored events in the sliding-window metric (default 1000)"),
        "tolerance": Key("float", 0.02, lo=0.0, flag="--tolerance", metavar="X", commands=STREAM_ONLY,
                         help="recovered after drift: windowed metric within X of its pre-drift value"),
        "log_every": Key("int", 500, lo=1, flag="--log-every", metavar="N", commands=STREAM_ONLY,
                         help="steps between metric records (metrics.jsonl)"),
        "checkpoint_every": Key("int", 10000, lo=0, flag="--checkpoint-steps", metavar="N", commands=STREAM_ONLY,
                                help="checkpoint every N steps (0: at the end only)"),
    },
}

# Keys that may differ between a saved run and the command that resumes it.
RESUMABLE_CHANGES: frozenset[str] = frozenset({"run.device", "run.checkpoint_every", "run.threads", "run.nproc",
                                               "train.epochs", "hardware.drift_eval"})



def defaults() -> dict[str, Any]:
    return {sec: {k: copy.deepcopy(key.default) for k, key in keys.items()} for sec, keys in SCHEMA.items()}


def flag_of(dest: str) -> str:
    """The command-line flag of a dotted key ("train.lr" -> "--lr"), or the key itself."""
    sec, _, k = dest.partition(".")
    key = SCHEMA.get(sec, {}).get(k)
    return key.flag if key is not None and key.flag else dest


# ---------------------------------------------------------------------------------------------
# checking


def check_value(where: str, key: Key, value: Any) -> Any:
    """The value, normalised (int -> float for float keys), or an OsttpError naming it (osttp.checks)."""
    if value is None:
        if key.optional:
            return None
        raise checks.fail(where, value, f"a {key.kind} value")
    k = key.kind
    lo = key.lo
    if k == "int":
        return checks.integer(where, value, ge=None if lo is None else int(lo),
                              le=None if key.hi is None else int(key.hi))
    if k == "float":
        return checks.number(where, value, gt=lo if key.strict else None, ge=None if key.strict else lo,
                             le=key.hi)
    if k == "bool":
        return checks.boolean(where, value)
    if k == "str":
        if isinstance(key.choices, Names):
            return _registered_name(where, key.choices, value)
        return checks.string(where, value, key.choices)
    if k in ("ints", "strs"):
        if not isinstance(value, (list, tuple)):
            raise checks.fail(where, value, "a list")
        if key.nonempty and not value:
            raise checks.fail(where, value, "a non-empty list")
        item = Key(k[:-1], lo=lo, hi=key.hi, choices=key.choices)
        out = [check_value(f"{where}[{i}]", item, v) for i, v in enumerate(value)]
        if key.unique and len(set(out)) != len(out):
            raise checks.fail(where, value, "a list without repeats")
        return out
    if k == "table":
        if not isinstance(value, Mapping):
            raise checks.fail(where, value, "a table")
        return copy.deepcopy(dict(value))
    raise AssertionError(f"unknown key kind {k}")  # a bug in SCHEMA, not user input


def _registered_name(where: str, names: Names, value: Any) -> str:
    known = names.names()
    checks.string(where, value)
    if value not in known:
        raise checks.fail(where, value, f"one of {', '.join(known)} (unknown {names.what} {value!r})")
    return value


def check_partial(cfg: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Check the tables and keys of a (possibly partial) config; unknown names are errors.

    source names where it came from ("config file 'x.toml'") and prefixes every message."""
    try:
        return _check_partial(cfg, source)
    except OsttpError as e:
        if str(e).startswith(source):
            raise
        raise OsttpError(f"{source}: {e}") from None


def _check_partial(cfg: Mapping[str, Any], source: str) -> dict[str, Any]:
    if not isinstance(cfg, Mapping):
        raise OsttpError(f"{source}: a config must be a table of tables, got {checks.show(cfg)}")
    out: dict[str, Any] = {}
    for sec, table in cfg.items():
        if sec not in SCHEMA:
            raise OsttpError(f"{source}: unknown config table [{sec}]; expected one of {', '.join(SCHEMA)}")
        if not isinstance(table, Mapping):
            raise OsttpError(f"{source}: [{sec}] must be a table, got {checks.show(table)}")
        out[sec] = {}
        for k, v in table.items():
            if k not in SCHEMA[sec]:
                raise OsttpError(f"{source}: unknown config key {sec}.{k}; expected one of "
                                 f"{', '.join(SCHEMA[sec])}")
            out[sec][k] = check_value(f"{sec}.{k}", SCHEMA[sec][k], v)
    return out


def merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """base updated by over, table by table; free-form tables merge key by key, so a
    --task-param adds to the config file's [task.params] instead of replacing it."""
    out = copy.deepcopy(base)
    for sec, table in over.items():
        dst = out.setdefault(sec, {})
        for k, v in table.items():
            if SCHEMA[sec][k].kind == "table" and isinstance(dst.get(k), dict):
                dst[k] = {**dst[k], **copy.deepcopy(v)}
            else:
                dst[k] = copy.deepcopy(v)
    return out


def resolve(*layers: tuple[Mapping[str, Any], str]) -> dict[str, Any]:
    """The defaults merged with each (partial config, source name) in turn, each checked first."""
    cfg = defaults()
    checked = []
    for partial, source in layers:
        checked.append((check_partial(partial, source), source))
        cfg = merge(cfg, checked[-1][0])
    hardware_optimizer(cfg, checked)
    check_consistency(cfg)
    return cfg


def require_run_keys(cfg: Mapping[str, Any]) -> None:
    if not cfg["task"]["name"]:
        raise OsttpError("no task given: use --task NAME or set [task] name in the config file")
    if not cfg["train"]["rule"]:
        raise OsttpError("no learning rule given: use --rule NAME or set [train] rule in the config file")


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two full configs (free-form tables compared whole)."""

    def norm(key: Key, v: Any) -> Any:
        # a None entry in a free-form table equals an absent one: config.toml cannot write None
        return {x: y for x, y in v.items() if y is not None} if key.kind == "table" and isinstance(v, dict) else v

    out = []
    for sec in SCHEMA:
        for k, key in SCHEMA[sec].items():
            va, vb = norm(key, a.get(sec, {}).get(k)), norm(key, b.get(sec, {}).get(k))
            if va != vb:
                out.append(f"{sec}.{k}")
    return out
