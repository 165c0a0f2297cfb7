"""Replay buffers: uniform and prioritized n-step replay, optionally storing each frame of
frame-stacked observations once. Built from the ``replay:`` config section by the composition
root (`rlfleet.build`) and handed to the algorithm."""
