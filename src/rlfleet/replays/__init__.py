"""Replay buffers: uniform and prioritized n-step replay, optionally storing each frame of
frame-stacked observations once."""

from rlfleet.replays.n_step import NStepReplayBuffer, ReplaySamples, StackedFrames, WholeObservations
from rlfleet.replays.prioritized import PrioritizedReplayBuffer, PrioritizedSamples
from rlfleet.replays.sum_tree import SumTree

__all__ = [
    "NStepReplayBuffer",
    "PrioritizedReplayBuffer",
    "PrioritizedSamples",
    "ReplaySamples",
    "StackedFrames",
    "SumTree",
    "WholeObservations",
]
