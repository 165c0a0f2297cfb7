"""Every shipped preset validates: each env a preset file names, and for files with only
``defaults``, a representative env id of the suite (no env is built)."""

from __future__ import annotations

import importlib.util

import pytest

from rlfleet.config.loader import PRESET_DIR, env_suite, load_yaml, resolve, validate

REPRESENTATIVE = {
    "classic": "CartPole-v1",
    "box2d": "LunarLander-v3",
    "mujoco": "HalfCheetah-v5",
    "atari": "ALE/Pong-v5",
    "minatar": "MinAtar/Breakout-v1",
    "dmc": "dmc:cheetah-run",
    "memory": "CartPoleNoVel-v1",
    "procgen": "procgen:coinrun",
    "exploration": "DeepSea-v0",
}


def preset_cases() -> list[tuple[str, str]]:
    cases = []
    for path in sorted(PRESET_DIR.glob("*/*.yaml")):
        algorithm, suite = path.parent.name, path.stem
        env_ids = list(load_yaml(path).get("envs") or {}) or [REPRESENTATIVE[suite]]
        cases += [(algorithm, env_id) for env_id in env_ids]
    return cases


@pytest.mark.parametrize(("algorithm", "env_id"), preset_cases())
def test_preset_validates(algorithm, env_id):
    if env_suite(env_id) == "dmc" and importlib.util.find_spec("dm_control") is None:
        pytest.skip("needs dm_control (pip install 'rlfleet[dmc]'), which validating a dmc: id imports")
    if env_suite(env_id) == "procgen" and importlib.util.find_spec("procgen") is None:
        pytest.skip("needs Procgen (scripts/install_procgen.sh), which validating a procgen: id imports")
    data = resolve(algorithm, env_id)
    config = validate(data)
    assert config.algorithm == algorithm and config.env.id == env_id
    assert env_suite(env_id) in REPRESENTATIVE
