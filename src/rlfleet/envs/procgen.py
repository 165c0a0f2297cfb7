"""Procgen (Cobbe et al. 2020): 16 procedurally generated games, named ``procgen:<game>``
(``procgen:coinrun``, ``procgen:starpilot``, ...; preset suite ``procgen``).

Installing: ``pip install 'rlfleet[procgen]'`` brings gym3's runtime dependencies, then
`INSTALL_COMMAND` (``scripts/install_procgen.sh`` runs it) installs Procgen itself from the
``procgen-mirror`` wheel (the ``procgen`` project has no wheel for Python 3.11) and gym3 with
``--no-deps``: their metadata pins numpy < 2 and old gym, which pip would otherwise downgrade
numpy for, while the native env runs under numpy 2. ``procgen/__init__.py`` imports old gym
only to register ``gym.make`` ids (``procgen/gym_registration.py``); `gym3_env_class` loads
``procgen.env`` without running that ``__init__``, so old gym is not needed.

Each env is a `ProcgenEnv` over ``ProcgenGym3Env(num=1)``:

- observations: Procgen's 64x64 RGB frame channels first, ``[3, 64, 64]`` uint8;
  actions: Discrete(15).
- ``env.kwargs`` are Procgen's options (`OPTIONS`, with Procgen's defaults): ``distribution_mode``
  (easy, hard, extreme, memory, exploration; `MODE_GAMES` says which games have which),
  ``num_levels`` (0: the full level distribution), ``start_level``, ``use_sequential_levels``,
  ``center_agent``, ``use_backgrounds``, ``use_monochrome_assets``, ``restrict_themes``,
  ``use_generated_assets``, ``paint_vel_info``.
- episodes: gym3 starts the next episode by itself. The step that ends an episode returns
  ``terminated`` or, when the episode ran to the game's step limit (`step_limit`: 1000 steps,
  500 in maze and leaper, 4000 in bossfight and plunder, 6000 in bigfish, 2000 in jumper's memory
  mode) without completing the level, ``truncated``; the next ``reset()`` hands out the new
  episode's first observation. Procgen never shows the frame after the last step, so that step
  returns the last frame the agent saw (a truncated episode is bootstrapped from it).
  ``info["level_complete"]`` is 1.0 on the step that completes a level (0.0 otherwise), so the
  episode records carry whether the last level was completed.
- seeding: ``reset(seed=s)`` rebuilds the game with ``rand_seed=s`` (the seed of Procgen's level
  draws): two runs with the same seeds see the same levels. ``reset()`` in the middle of an
  episode ends it with Procgen's forced reset (action -1) and starts the next level.
- held-out evaluation: for ``num_levels > 0`` the default test split is `held_out_split_kwargs`,
  ``num_levels: 0``: the full level distribution with the same distribution mode, Cobbe et al.'s
  test protocol (see ``EnvConfig.test_kwargs``).
- checkpoints: the env pickles through Procgen's own state (``get_state``/``set_state``), so a
  resumed run continues its episodes exactly.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
import sys
from typing import Any

import gymnasium as gym
import numpy as np

from rlfleet.errors import ConfigError

PROCGEN_PREFIX = "procgen:"
GAMES: tuple[str, ...] = (
    "bigfish",
    "bossfight",
    "caveflyer",
    "chaser",
    "climber",
    "coinrun",
    "dodgeball",
    "fruitbot",
    "heist",
    "jumper",
    "leaper",
    "maze",
    "miner",
    "ninja",
    "plunder",
    "starpilot",
)
#: distribution mode -> the games that have it (Procgen's ``game.cpp`` and ``env.py``).
MODE_GAMES: dict[str, tuple[str, ...]] = {
    "easy": GAMES,
    "hard": GAMES,
    "extreme": ("chaser", "dodgeball", "leaper", "starpilot"),
    "memory": ("caveflyer", "dodgeball", "heist", "jumper", "maze", "miner"),
    "exploration": ("caveflyer", "climber", "coinrun", "heist", "jumper", "leaper", "maze", "ninja"),
}
#: ``env.kwargs`` -> Procgen's default.
OPTIONS: dict[str, Any] = {
    "distribution_mode": "hard",
    "num_levels": 0,
    "start_level": 0,
    "use_sequential_levels": False,
    "center_agent": True,
    "use_backgrounds": True,
    "use_monochrome_assets": False,
    "restrict_themes": False,
    "use_generated_assets": False,
    "paint_vel_info": False,
}
#: Episode step limits other than Procgen's default of 1000 (``timeout`` in the games' sources).
STEP_LIMITS: dict[str, int] = {"bigfish": 6000, "bossfight": 4000, "leaper": 500, "maze": 500, "plunder": 4000}
DEFAULT_STEP_LIMIT = 1000
SEED_LIMIT = 2**31  # Procgen's seeds and level numbers are C ints
INSTALL_COMMAND = "pip install 'rlfleet[procgen]' && pip install --no-deps procgen-mirror==0.10.7 gym3==0.3.3"


def is_procgen(env_id: str) -> bool:
    """Whether ``env_id`` names a Procgen game (``procgen:<game>``)."""
    return env_id.startswith(PROCGEN_PREFIX)


def procgen_game(env_id: str) -> str:
    """The game of a ``procgen:`` id; ConfigError naming the closest game when unknown."""
    game = env_id[len(PROCGEN_PREFIX) :]
    if game in GAMES:
        return game
    close = difflib.get_close_matches(game, GAMES, n=1, cutoff=0.0)
    raise ConfigError(f"unknown Procgen game {game!r} in env id {env_id!r}; did you mean '{PROCGEN_PREFIX}{close[0]}'?")


def missing_package_message(env_id: str) -> str:
    """The one-line error for a ``procgen:`` id when Procgen is not installed."""
    return f"env {env_id!r} needs Procgen, which this install lacks: {INSTALL_COMMAND} (scripts/install_procgen.sh)"


@functools.cache
def _import_gym3_env_class() -> Any | None:
    if "procgen" not in sys.modules:
        spec = importlib.util.find_spec("procgen")
        if spec is None:
            return None
        sys.modules["procgen"] = importlib.util.module_from_spec(spec)  # the package, its __init__ not run
    try:
        return importlib.import_module("procgen.env").ProcgenGym3Env
    except ImportError:
        return None


def gym3_env_class(env_id: str) -> Any:
    """``procgen.env.ProcgenGym3Env``, imported without running ``procgen/__init__.py`` (which
    imports old gym to register ``gym.make`` ids); the one-line `missing_package_message` for
    ``env_id`` as a ConfigError when Procgen or gym3 is missing."""
    env_class = _import_gym3_env_class()
    if env_class is None:
        raise ConfigError(missing_package_message(env_id))
    return env_class


def procgen_options(env_id: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``env.kwargs`` of a ``procgen:`` id checked and completed with Procgen's defaults;
    ConfigError (one line, naming the nearest option or valid value) otherwise."""
    game = procgen_game(env_id)
    for key, value in kwargs.items():
        if key not in OPTIONS:
            close = difflib.get_close_matches(key, list(OPTIONS), n=1, cutoff=0.0)
            raise ConfigError(f"unknown env.kwargs key {key!r} for {env_id}; did you mean {close[0]!r}?")
        default = OPTIONS[key]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"env.kwargs.{key} must be true or false, got {value!r}")
        elif isinstance(default, int) and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ConfigError(f"env.kwargs.{key} must be an integer >= 0, got {value!r}")
    options = {**OPTIONS, **kwargs}
    mode = options["distribution_mode"]
    if mode not in MODE_GAMES:
        close = difflib.get_close_matches(str(mode), list(MODE_GAMES), n=1, cutoff=0.0)
        raise ConfigError(
            f"env.kwargs.distribution_mode={mode!r} is not a Procgen mode ({', '.join(MODE_GAMES)}); "
            f"did you mean {close[0]!r}?"
        )
    if game not in MODE_GAMES[mode]:
        raise ConfigError(
            f"{env_id} has no {mode!r} distribution mode; the games that have it: {', '.join(MODE_GAMES[mode])}"
        )
    if mode == "exploration" and {"num_levels", "start_level"} & set(kwargs):
        raise ConfigError(
            "distribution_mode 'exploration' plays one fixed level: remove env.kwargs num_levels and start_level"
        )
    if options["start_level"] + options["num_levels"] >= SEED_LIMIT:
        raise ConfigError(
            f"env.kwargs start_level + num_levels must stay below 2**31, "
            f"got {options['start_level']} + {options['num_levels']}"
        )
    return options


def held_out_split_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Procgen's test split for training ``kwargs``: ``{"num_levels": 0}`` (the full level
    distribution, the same distribution mode) when they train on ``num_levels > 0`` levels,
    else ``{}`` (no held-out split: training already sees every level)."""
    return {"num_levels": 0} if kwargs.get("num_levels", 0) > 0 else {}


def step_limit(game: str, distribution_mode: str) -> int:
    """The steps after which Procgen ends an episode of ``game`` (its ``timeout``)."""
    if game == "jumper" and distribution_mode == "memory":
        return 2000
    return STEP_LIMITS.get(game, DEFAULT_STEP_LIMIT)


class ProcgenEnv(gym.Env):
    """One Procgen game as a Gymnasium env (see the module docstring).

    Args:
        env_id: ``procgen:<game>``.
        kwargs: Procgen's options (`OPTIONS`; checked by `procgen_options`).
        render_mode: None or ``rgb_array`` (``render()`` then gives Procgen's 512x512 frame).

    Observations ``[3, 64, 64]`` uint8, actions Discrete(15), rewards floats.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, env_id: str, kwargs: dict[str, Any] | None = None, render_mode: str | None = None):
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"{env_id} renders rgb_array frames only, not render_mode={render_mode!r}")
        self.env_id = env_id
        self.game = procgen_game(env_id)
        self.options = procgen_options(env_id, dict(kwargs or {}))
        self.render_mode = render_mode
        self.step_limit = step_limit(self.game, self.options["distribution_mode"])
        self.observation_space = gym.spaces.Box(0, 255, (3, 64, 64), np.uint8)
        self.action_space = gym.spaces.Discrete(15)
        self._gym3_class = gym3_env_class(env_id)
        self._game: Any = None  # the ProcgenGym3Env, built by the first reset
        self._next_first: np.ndarray | None = None  # the next episode's first frame, after an end
        self._last_obs: np.ndarray | None = None
        self._level_steps = 0  # steps since the current level started (Procgen's timeout counter)

    def _build(self, rand_seed: int) -> None:
        if self._game is not None:
            self._game.close()
        options = dict(self.options)
        if options["distribution_mode"] == "exploration":  # Procgen sets its one level itself
            del options["num_levels"], options["start_level"]
        self._game = self._gym3_class(
            num=1,
            env_name=self.game,
            rand_seed=rand_seed,
            num_threads=0,
            render_mode=self.render_mode,
            **options,
        )

    def _observe(self) -> tuple[float, np.ndarray, bool, dict[str, Any]]:
        reward, obs, first = self._game.observe()
        frame = np.ascontiguousarray(np.transpose(obs["rgb"][0], (2, 0, 1)))  # a copy: gym3 reuses its buffer
        return float(reward[0]), frame, bool(first[0]), self._game.get_info()[0]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None or self._game is None:
            rand_seed = seed % SEED_LIMIT if seed is not None else int(self.np_random.integers(SEED_LIMIT))
            self._build(rand_seed)
            obs = self._observe()[1]
        elif self._next_first is not None:
            obs = self._next_first
        else:  # mid-episode (an outer time limit, a cut evaluation): Procgen's forced reset
            self._game.act(np.array([-1], np.int32))
            obs = self._observe()[1]
        self._next_first, self._last_obs, self._level_steps = None, obs, 0
        return obs, {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._next_first is not None:
            raise RuntimeError(f"{self.env_id}: step() after the episode ended; call reset() first")
        if not 0 <= action < self.action_space.n:
            raise ValueError(f"{self.env_id}: action {action!r} is not in Discrete(15)")
        self._game.act(np.array([action], np.int32))
        reward, obs, first, procgen_info = self._observe()
        self._level_steps += 1
        completed = bool(procgen_info["prev_level_complete"])
        info = {"level_complete": float(completed)}
        if not first:
            if completed:  # use_sequential_levels: the next level goes on in the same episode
                self._level_steps = 0
            self._last_obs = obs
            return obs, reward, False, False, info
        truncated = self._level_steps >= self.step_limit and not completed
        self._next_first = obs
        return self._last_obs, reward, not truncated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array" or self._game is None:
            return None
        return np.array(self._game.get_info()[0]["rgb"])

    def close(self) -> None:
        if self._game is not None:
            self._game.close()
            self._game = None

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("_game", "_gym3_class")}
        state["_procgen_state"] = None if self._game is None else self._game.get_state()[0]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        procgen_state = state.pop("_procgen_state")
        self.__dict__.update(state)
        self._gym3_class, self._game = gym3_env_class(self.env_id), None
        if procgen_state is not None:
            self._build(0)
            self._game.set_state([procgen_state])


def make_procgen_env(env_id: str, kwargs: dict[str, Any], render_mode: str | None = None) -> gym.Env:
    """The Gymnasium env of a ``procgen:<game>`` id."""
    return ProcgenEnv(env_id, kwargs, render_mode)
