"""One declaration module per algorithm: its config dataclass and ``SPEC`` (see `rlfleet.algos.spec`).

A new algorithm adds a module here (or, outside rlfleet, an ``rlfleet.algorithms`` entry point);
no central list names it. These modules import no torch.
"""
