"""Learning rules: trace kind x learning signal x update schedule (docs/math.md §4)."""
from osttp.rules import factorized  # noqa: F401  (registers the factorized trace kind)
from osttp.rules import local_error  # noqa: F401  (registers the local-error signal)
from osttp.rules.bptt import BPTTLearner
from osttp.rules.learner import Learner
from osttp.rules.losses import Loss, make_loss
from osttp.rules.online import OnlineLearner
from osttp.rules.regularisers import RateRegulariser
from osttp.rules.presets import ONLINE_PRESETS, PRESETS, available_learners, make_learner, register_online_preset
from osttp.rules.schedules import Schedule, make_schedule
from osttp.rules.signals import SIGNALS, make_signal
from osttp.rules.traces import TRACE_KINDS, make_trace

__all__ = ["BPTTLearner", "Learner", "Loss", "ONLINE_PRESETS", "OnlineLearner", "PRESETS", "RateRegulariser",
           "SIGNALS", "Schedule", "TRACE_KINDS", "available_learners", "make_learner", "make_loss", "make_schedule", "make_signal",
           "make_trace", "register_online_preset"]
