"""Resolve a run's config: preset YAML for (algorithm, env suite) <- user YAML <- CLI overrides,
then validate into an `ExperimentConfig`."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import yaml

from rlfleet.algos.registry import algorithms, get_algorithm
from rlfleet.algos.spec import AlgoSpec
from rlfleet.config.schema import (
    EnvConfig,
    ExperimentConfig,
    LoggerConfig,
    ReplayConfig,
    RunnerConfig,
    SamplerConfig,
)
from rlfleet.config.validate import build_dataclass, check_field, check_kwargs, dataclass_keys, unknown_key_error
from rlfleet.errors import ConfigError
from rlfleet.utils.imports import import_object, looks_like_import_path

PRESET_DIR = Path(__file__).resolve().parent.parent / "configs"
SECTIONS: dict[str, type] = {"env": EnvConfig, "sampler": SamplerConfig, "runner": RunnerConfig, "logger": LoggerConfig}
MODEL_SPACE_ARGS = ("observation_space", "action_space")
SPACE_NAMES = {"discrete": "Discrete", "box": "Box"}
# Replay keys that lived under ``algo:`` before the replay became its own section.
MOVED_TO_REPLAY = {
    "replay_size": "replay.size",
    "prioritized": "replay.kind (uniform or prioritized)",
    "priority_alpha": "replay.alpha",
    "priority_beta_start": "replay.beta_start",
    "priority_beta_steps": "replay.beta_steps",
    "priority_eps": "replay.eps",
    "replay_frame_stack": "replay.frame_stack",
}


def env_suite(env_id: str) -> str:
    """The preset suite of an env id: atari, minatar, dmc, procgen, classic, box2d, mujoco, memory
    (the partially observable NoVel, POPGym and MiniGrid ids of `rlfleet.envs.pomdp`),
    exploration (``DeepSea-v0`` of `rlfleet.envs.deepsea`) or custom."""
    from rlfleet.envs.deepsea import is_exploration_env
    from rlfleet.envs.pomdp import is_memory_env
    from rlfleet.envs.procgen import is_procgen

    if is_memory_env(env_id):
        return "memory"
    if is_exploration_env(env_id):
        return "exploration"
    if is_procgen(env_id):
        return "procgen"
    if env_id.startswith("ALE/"):
        return "atari"
    if env_id.startswith("dmc:"):
        return "dmc"
    if env_id.startswith("MinAtar/"):
        return "minatar"
    if looks_like_import_path(env_id):
        return "custom"
    import gymnasium as gym

    spec = gym.registry.get(env_id)
    entry = str(spec.entry_point) if spec else ""
    for suite in ("classic_control", "box2d", "mujoco"):
        if suite in entry:
            return "classic" if suite == "classic_control" else suite
    return "custom"


def available_presets() -> dict[str, list[str]]:
    """``{algorithm: [suite, ...]}`` of the shipped preset files."""
    return {d.name: sorted(p.stem for p in d.glob("*.yaml")) for d in sorted(PRESET_DIR.iterdir()) if d.is_dir()}


def deep_merge(base: dict, update: dict) -> dict:
    """A new dict: ``update`` merged into ``base`` (nested dicts merged, anything else replaced)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping")
    return data


def preset(algorithm: str, env_id: str) -> dict:
    """The shipped preset for ``algorithm`` on ``env_id``'s suite: its ``defaults`` merged with
    the ``envs: {env_id: ...}`` entry, if any. Empty when no preset file exists."""
    path = PRESET_DIR / algorithm / f"{env_suite(env_id)}.yaml"
    if not path.is_file():
        return {}
    data = load_yaml(path)
    return deep_merge(data.get("defaults", {}), data.get("envs", {}).get(env_id, {}))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], YAML-parsed value)."""
    key, sep, raw = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} must look like key.subkey=value")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    data = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return data


def all_keys(spec: AlgoSpec, model_class: Any) -> list[str]:
    keys = ["algorithm", "seed", "model"]
    for name, cls in SECTIONS.items():
        keys += [name] + dataclass_keys(cls, f"{name}.")
    keys += dataclass_keys(spec.config, "algo.") + dataclass_keys(spec.agent_config, "agent.")
    if spec.off_policy:
        keys += ["replay"] + dataclass_keys(ReplayConfig, "replay.")
    try:
        import inspect

        keys += [f"model.{n}" for n in inspect.signature(model_class).parameters if n not in MODEL_SPACE_ARGS]
    except (TypeError, ValueError):
        pass
    return keys


def _model_class(spec: AlgoSpec, model: dict, env_spaces_hint: Any | None) -> Any:
    if "_target_" in model:
        return import_object(str(model["_target_"]), what="model")
    if env_spaces_hint is None or env_spaces_hint.action_kind not in spec.action_spaces:
        return None
    return spec.default_model_class(env_spaces_hint.action_kind)


def validate(data: dict, env_spaces: Any | None = None) -> ExperimentConfig:
    """Check every key and value; ``env_spaces`` (when known) picks the default model class
    whose keyword arguments ``model.*`` must match."""
    if "algorithm" not in data:
        raise ConfigError("config has no 'algorithm'")
    spec = get_algorithm(str(data["algorithm"]))
    model = data.get("model") or {}
    if not isinstance(model, dict):
        raise ConfigError(f"config section 'model' must be a mapping, got {model!r}")
    model_class = _model_class(spec, model, env_spaces)
    keys = all_keys(spec, model_class)
    kwargs: dict[str, Any] = {"algorithm": spec.name, "model": dict(model)}
    for key, value in data.items():
        if key in ("algorithm", "model"):
            continue
        if key == "seed":
            kwargs["seed"] = check_field(ExperimentConfig, "seed", value, "seed")
        elif key == "runner":
            kwargs[key] = build_dataclass(RunnerConfig, {**spec.runner_defaults, **(value or {})}, key, keys)
        elif key in SECTIONS:
            kwargs[key] = build_dataclass(SECTIONS[key], value or {}, key, keys)
        elif key == "algo":
            check_moved_keys(value or {})
            kwargs[key] = build_dataclass(spec.config, value or {}, key, keys)
        elif key == "agent":
            kwargs[key] = build_dataclass(spec.agent_config, value or {}, key, keys)
        elif key == "replay" and value is not None and not spec.off_policy:
            raise ConfigError(f"{spec.name} is on-policy and uses no replay: remove the 'replay' section")
        elif key != "replay":
            raise unknown_key_error(key, keys)
    kwargs.setdefault("runner", build_dataclass(RunnerConfig, dict(spec.runner_defaults), "runner", keys))
    kwargs.setdefault("algo", spec.config())
    kwargs.setdefault("agent", spec.agent_config())
    if spec.off_policy:
        kwargs["replay"] = build_dataclass(
            ReplayConfig, {**spec.replay_defaults, **(data.get("replay") or {})}, "replay", keys
        )
    if model_class is not None:
        model_kwargs = {k: v for k, v in model.items() if k != "_target_"}
        check_kwargs(model_class, model_kwargs, "model", skip=MODEL_SPACE_ARGS)
    env = kwargs.get("env")
    if env is not None and looks_like_import_path(env.id):
        check_kwargs(import_object(env.id, what="env"), env.kwargs, "env.kwargs")
    config = ExperimentConfig(**kwargs)
    check_capabilities(spec, config, env_spaces)
    return config


def check_override_keys(algorithm: str, overrides: list[str]) -> None:
    """Unknown keys among ``overrides`` of ``algorithm``, named before any preset or env is
    read (``model.*`` and ``env.kwargs.*`` depend on the model and env: checked later)."""
    spec = get_algorithm(algorithm)
    keys = all_keys(spec, None)
    for text in overrides:
        path, value = parse_override(text)
        key = ".".join(path)
        if path[0] == "model" or key.startswith(("env.kwargs.", "env.test_kwargs.")) or key in keys:
            continue
        if path[0] == "algo" and len(path) == 2 and path[1] in MOVED_TO_REPLAY:
            check_moved_keys({path[1]: value})
        if key not in keys and not (isinstance(value, dict) and key in keys):
            raise unknown_key_error(key, keys)


def check_moved_keys(algo: Any) -> None:
    """One line for a replay key still under ``algo:`` (configs written before the replay
    became its own section)."""
    if isinstance(algo, dict):
        for key in algo:
            if key in MOVED_TO_REPLAY:
                raise ConfigError(f"config key 'algo.{key}' moved to {MOVED_TO_REPLAY[key]}")


def check_ray_runner(spec: AlgoSpec, config: ExperimentConfig) -> None:
    """What ``runner.kind=ray`` cannot do yet, and Ray's presence."""
    r = config.runner
    if r.inference == "central" and spec.distributed_mode != "impala":
        raise ConfigError(
            f"runner.inference=central (SEED-style) serves IMPALA's actor workers; {spec.name} trains as "
            f"{spec.distributed_mode} on Ray: use runner.inference=actor"
        )
    if config.env.normalize_obs or config.env.normalize_reward:
        raise ConfigError(
            "runner.kind=ray keeps no shared normaliser statistics across actor workers: "
            "set env.normalize_obs=false and env.normalize_reward=false"
        )
    if config.recurrent and (config.replay is None or config.replay.kind != "sequence"):
        raise ConfigError(
            f"{spec.name} on runner.kind=ray trains feed-forward agents: remove model.core "
            "(recurrent agents train on Ray with r2d2 or rdqn, on sequence replay shards)"
        )
    if r.n_replay_shards > r.n_actors:
        raise ConfigError(
            f"runner.n_replay_shards={r.n_replay_shards} exceeds runner.n_actors={r.n_actors}: "
            "each shard needs at least one actor writing to it"
        )
    batch = config.sampler.batch_T * config.sampler.batch_B
    if config.replay is not None and config.replay.size // r.n_actors < 2 * batch:
        raise ConfigError(
            f"replay.size={config.replay.size} leaves each of the {r.n_actors} actors' rings fewer than two "
            f"batches ({config.sampler.batch_T}x{config.sampler.batch_B}): raise replay.size"
        )
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ConfigError("runner.kind=ray needs Ray: pip install 'rlfleet[ray]'") from None


def check_capabilities(spec: AlgoSpec, config: ExperimentConfig, env_spaces: Any | None) -> None:
    """What ``spec`` declares against what ``config`` asks for (and the env's action space when
    known); the algorithm's own cross-field rules last."""
    kind = config.runner.kind
    if kind not in spec.runner_kinds:
        others = [s for s in algorithms().values() if kind in s.runner_kinds]
        policies = {s.policy for s in others}
        which = f"{policies.pop()}-policy algorithms" if len(policies) == 1 else "the algorithms"
        raise ConfigError(
            f"runner.kind={kind} runs {which} ({', '.join(s.name for s in others)}); {spec.name} is "
            f"{spec.policy}-policy: use runner.kind {' or '.join(spec.runner_kinds)}"
        )
    if kind == "ray":
        check_ray_runner(spec, config)
    if config.sampler.kind not in spec.sampler_kinds:
        raise ConfigError(
            f"sampler.kind={config.sampler.kind} does not run {spec.name}; "
            f"it runs with sampler.kind {' or '.join(spec.sampler_kinds)}"
        )
    if env_spaces is not None and env_spaces.action_kind not in spec.action_spaces:
        others = [s.name for s in algorithms().values() if env_spaces.action_kind in s.action_spaces]
        hint = f"; algorithms that can: {', '.join(others)}" if others else ""
        needs = " or ".join(SPACE_NAMES[kind] for kind in spec.action_spaces)
        raise ConfigError(
            f"{spec.name} cannot act in {config.env.id}: its action space is "
            f"{type(env_spaces.action).__name__}, {spec.name} needs {needs}{hint}"
        )
    if config.replay is not None and config.replay.kind not in spec.replay_kinds:
        others = [s.name for s in algorithms().values() if s.off_policy and config.replay.kind in s.replay_kinds]
        raise ConfigError(
            f"replay.kind={config.replay.kind} does not train {spec.name} (it trains {', '.join(others)}); "
            f"{spec.name} takes replay.kind {' or '.join(spec.replay_kinds)}"
        )
    if config.recurrent:
        if not spec.recurrent:
            can = [s.name for s in algorithms().values() if s.recurrent]
            raise ConfigError(
                f"model.core={config.model['core']}: {spec.name} has no recurrent form; "
                f"algorithms with one: {', '.join(can)}"
            )
        if config.sampler.kind == "alternating":
            raise ConfigError(
                "sampler.kind=alternating calls the agent on half the envs at a time, which a recurrent "
                "agent's per-env state does not follow: use sampler.kind serial or parallel"
            )
    if spec.check is not None:
        spec.check(config)


def resolve(
    algorithm: str | None,
    env_id: str | None,
    overrides: list[str] | None = None,
    config_file: str | Path | None = None,
    seed: int | None = None,
) -> dict:
    """The merged (not yet validated) config dict for a new run."""
    data: dict = load_yaml(config_file) if config_file else {}
    algorithm = algorithm or data.get("algorithm")
    if not algorithm:
        raise ConfigError("name an algorithm (rlfleet train ALGO -e ENV) or give --config FILE with 'algorithm'")
    spec = get_algorithm(str(algorithm))
    env_id = env_id or (data.get("env") or {}).get("id")
    if not env_id:
        raise ConfigError("name an env with -e ENV (e.g. -e CartPole-v1)")
    from rlfleet.envs.make import check_env_id

    check_env_id(env_id)
    merged = deep_merge(preset(spec.name, env_id), data)
    merged["algorithm"] = spec.name
    merged.setdefault("env", {})["id"] = env_id
    merged = apply_overrides(merged, overrides or [])
    if seed is not None:
        merged["seed"] = seed
    return merged


def to_dict(config: ExperimentConfig) -> dict:
    """Plain, YAML-ready dict of a config."""
    return dataclasses.asdict(config)


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    from rlfleet.utils.atomic import atomic_write

    with atomic_write(path, "w") as f:
        yaml.safe_dump(to_dict(config), f, sort_keys=False)
