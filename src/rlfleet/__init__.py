"""rlfleet: deep reinforcement learning in PyTorch."""

__version__ = "0.1.0"

__all__ = ["__version__", "load_agent"]


def __getattr__(name: str):
    if name == "load_agent":  # torch is imported on first use only: `import rlfleet` stays light
        from rlfleet.inference import load_agent

        return load_agent
    raise AttributeError(f"module 'rlfleet' has no attribute {name!r}")
