"""The env of ``rlfleet eval --video``: built with ``render_mode="rgb_array"`` and checked to
return frames, so that an env that cannot render is named in one line."""

from __future__ import annotations

import numpy as np

from rlfleet.config.schema import EnvConfig
from rlfleet.envs.gym_env import GymEnv
from rlfleet.envs.make import make_env
from rlfleet.errors import RlfleetError


def cannot_render(env_id: str, why: str) -> RlfleetError:
    return RlfleetError(f"env {env_id!r} cannot render, so --video records nothing: {why}")


def make_render_env(config: EnvConfig) -> GymEnv:
    """An evaluation env rendering ``rgb_array`` frames. RlfleetError when the env's class takes
    no ``render_mode`` argument or its ``render()`` returns no image after a reset."""
    try:
        env = make_env(config, training=False, render_mode="rgb_array")
    except TypeError as err:
        if "render_mode" not in str(err):
            raise
        raise cannot_render(config.id, "its constructor takes no render_mode argument") from None
    try:
        env.reset(seed=0)
        frame = env.render()
    except BaseException:
        env.close()
        raise
    if not isinstance(frame, np.ndarray) or frame.ndim != 3:
        env.close()
        what = "None" if frame is None else type(frame).__name__
        raise cannot_render(config.id, f"render() with render_mode='rgb_array' returned {what}, not an RGB image")
    return env
