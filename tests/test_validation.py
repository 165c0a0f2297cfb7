"""Validation before anything is written (issue 11): every value rule lives in the config
schema (`rlfleet.config.rules` annotations, ``Literal`` choices), and a bad value stops
``rlfleet train`` with one ``rlfleet: error:`` line naming the key, exit 2, before a run
directory exists."""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_helpers import rlfleet
from conftest import QUIET
from rlfleet.algos.registry import algorithms
from rlfleet.config.loader import resolve, validate
from rlfleet.config.rules import Range
from rlfleet.config.schema import ReplayConfig, RunnerConfig, SamplerConfig
from rlfleet.errors import ConfigError

EXISTING = Path("runs", "CartPole-v1", "ppo", "existing", "seed0")


def listing(root: Path) -> dict[str, int | None]:
    """Every path under ``root``: files with their mtime, directories as None."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns if p.is_file() else None for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A directory whose ``runs/`` holds one tiny real run."""
    cwd = tmp_path_factory.mktemp("validation")
    args = ["runner.n_steps=64", "sampler.batch_T=16", "sampler.batch_B=2", "runner.log_interval_steps=32"]
    args += ["runner.eval_interval_steps=0", "runner.eval_episodes=1", *QUIET]
    proc = rlfleet("train", "ppo", "-e", "CartPole-v1", "--runs-dir", "runs", "--name", "existing", *args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert (cwd / EXISTING / "config.yaml").is_file()
    return cwd


def assert_rejected(cwd: Path, algo: str, args: list[str], expected: str) -> None:
    """``rlfleet train algo ARGS`` exits 2 with the one line ``rlfleet: error: <expected>``,
    and nothing under ``cwd/runs`` changes (no new run directory; the existing run untouched)."""
    before = listing(cwd / "runs")
    proc = rlfleet("train", algo, "-e", "CartPole-v1", "--runs-dir", "runs", "--name", "bad", *args, *QUIET, cwd=cwd)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "Traceback" not in output
    assert proc.stderr.splitlines() == [f"rlfleet: error: {expected}"], output
    assert listing(cwd / "runs") == before
    assert not (cwd / "runs" / "CartPole-v1" / algo / "bad").exists()


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("sampler.batch_B=0", "config key 'sampler.batch_B' must be >= 1, got 0"),
        ("runner.n_steps=-5", "config key 'runner.n_steps' must be >= 1, got -5"),
    ],
)
def test_counts(workdir, arg, expected):
    assert_rejected(workdir, "ppo", [arg], expected)


def test_intervals(workdir):
    assert_rejected(workdir, "ppo", ["algo.gamma=1.5"], "config key 'algo.gamma' must be in [0, 1], got 1.5")


def test_learning_rates(workdir):
    assert_rejected(workdir, "ppo", ["algo.lr=-1"], "config key 'algo.lr' must be > 0, got -1.0")


def test_seeds(workdir):
    assert_rejected(workdir, "ppo", ["--seed", "-1"], "config key 'seed' must be >= 0, got -1")


@pytest.mark.parametrize(
    ("algo", "arg", "expected"),
    [
        ("dqn", "algo.loss=l1", "config key 'algo.loss' must be one of 'huber', 'mse', got 'l1'"),
        (
            "ppo",
            "model.activation=swishy",
            "config key 'model.activation' must be one of 'tanh', 'relu', 'elu', 'silu', got 'swishy'",
        ),
        (
            "ppo",
            "sampler.kind=paralel",
            "config key 'sampler.kind' must be one of 'serial', 'parallel', 'alternating', 'envpool', "
            "got 'paralel'; did you mean 'parallel'?",
        ),
    ],
)
def test_choices(workdir, algo, arg, expected):
    assert_rejected(workdir, algo, [arg], expected)


def test_list_types(workdir):
    assert_rejected(
        workdir, "ppo", ["model.hidden_sizes=64"], "config key 'model.hidden_sizes' expects a list of int, got 64"
    )


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ("cuda", "runner.device 'cuda': no CUDA device on this machine (torch.cuda.is_available() is False); use cpu"),
        ("cpu:x", "runner.device 'cpu:x': not a torch device (Invalid device string: 'cpu:x'); use e.g. cpu, cuda"),
    ],
)
def test_devices(workdir, device, expected):
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    before = listing(workdir / "runs")
    proc = rlfleet("train", "ppo", "-e", "CartPole-v1", "--runs-dir", "runs", f"runner.device={device}", cwd=workdir)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"rlfleet: error: {expected}"), line
    assert listing(workdir / "runs") == before


@pytest.mark.parametrize("value", ["2e4", 20000.0, "20000", "2.0e4", 20000])
def test_rl_zoo_integers_are_accepted_where_exact(value):
    data = resolve("ppo", "CartPole-v1", ["runner.n_steps=1"])
    data["runner"]["n_steps"] = value
    n_steps = validate(data).runner.n_steps
    assert n_steps == 20000 and type(n_steps) is int
    assert validate(resolve("ppo", "CartPole-v1", ["runner.n_steps=2e4"])).runner.n_steps == 20000


@pytest.mark.parametrize("value", ["2.5e-1", 2.5, "1.5", True])
def test_inexact_integers_and_bools_are_not_ints(value):
    data = resolve("ppo", "CartPole-v1", [])
    data["runner"]["n_steps"] = value
    with pytest.raises(ConfigError, match="config key 'runner.n_steps' expects int"):
        validate(data)


@pytest.mark.parametrize(
    ("algo", "args", "message"),
    [
        ("c51", ["agent.v_min=300"], "config keys 'agent.v_min' and 'agent.v_max' must satisfy v_min < v_max"),
        ("sac", ["algo.alpha=0"], "config key 'algo.alpha' must be > 0, got 0.0"),
        ("sac", ["algo.tau=0"], "config key 'algo.tau' must be in (0, 1], got 0.0"),
        ("sac", ["algo.policy_delay=0"], "config key 'algo.policy_delay' must be >= 1, got 0"),
        ("sac", ["algo.target_update_interval=0"], "config key 'algo.target_update_interval' must be >= 1, got 0"),
        ("tac", ["algo.entropic_index=0"], "config key 'algo.entropic_index' must be > 0, got 0.0"),
        ("ppo", ["runner.dist_backend=mpi"], "config key 'runner.dist_backend' must be one of 'gloo', 'nccl'"),
        ("ppo", ["runner.n_replicas=0"], "config key 'runner.n_replicas' must be >= 1, got 0"),
        ("dqn", ["runner.async_lead_batches=0"], "config key 'runner.async_lead_batches' must be >= 1, got 0"),
        ("dqn", ["replay.beta_start=1.5"], "config key 'replay.beta_start' must be in [0, 1], got 1.5"),
        ("ddpg", ["agent.exploration_noise=pink"], "config key 'agent.exploration_noise' must be one of"),
    ],
)
def test_rules_once_checked_by_constructors_are_the_schemas(algo, args, message):
    env = "CartPole-v1" if algo in ("c51", "ppo", "dqn") else "Pendulum-v1"
    with pytest.raises(ConfigError) as info:
        validate(resolve(algo, env, args))
    assert str(info.value).startswith(message)


# ----- every field of every algorithm's sections, with wrong-typed and out-of-range values -----

SECTION_FIELDS = []


def _section_fields(algo: str, section: str, cls: type, prefix: str = "") -> None:
    """Every field of ``cls``, those of nested sections (``algo.rnd``) by dotted name."""
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            _section_fields(algo, section, hints[f.name], f"{prefix}{f.name}.")
        elif (section, f.name) != ("runner", "device"):  # devices: test_devices
            SECTION_FIELDS.append((algo, section, f"{prefix}{f.name}", hints[f.name]))


for _spec in algorithms().values():
    _sections = {"algo": _spec.config, "agent": _spec.agent_config, "runner": RunnerConfig, "sampler": SamplerConfig}
    if _spec.off_policy:
        _sections["replay"] = ReplayConfig
    for _section, _cls in _sections.items():
        _section_fields(_spec.name, _section, _cls)


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def bad_values(tp: typing.Any) -> st.SearchStrategy:
    """Values ``tp`` rejects: wrong types (strings for numbers, lists for scalars, bools for
    ints, scalars for lists...), numbers outside its range, and lists holding such a value."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = args[0]
    base, rules = tp, []
    if typing.get_origin(tp) is typing.Annotated:
        base, *rules = typing.get_args(tp)
    words = st.text(min_size=1, max_size=8).filter(lambda s: not _numeric(s))
    if typing.get_origin(base) in (collections.abc.Sequence, list, tuple):  # widths such as algo.rnd's
        item = typing.get_args(base)[0]
        return st.one_of(words, st.integers(), st.lists(bad_values(item), min_size=1, max_size=3))
    options = [st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)]
    if typing.get_origin(base) is typing.Literal:
        choices = typing.get_args(base)
        options += [st.text(max_size=10).filter(lambda s: s not in choices), st.integers(), st.booleans()]
    elif base is bool:
        options += [st.integers(), words, st.floats(allow_nan=False)]
    elif base is int:
        options += [st.booleans(), words, st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x % 1)]
    elif base is float:
        options += [st.booleans(), words]
    for rule in rules:
        if isinstance(rule, Range):
            numbers = st.integers(-(10**9), 10**9) if base is int else st.floats(-1e9, 1e9, allow_nan=False)
            options.append(numbers.filter(lambda x, rule=rule: x not in rule))
    return st.one_of(options)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_every_bad_value_is_one_line_naming_its_key(data):
    algo, section, name, tp = data.draw(st.sampled_from(SECTION_FIELDS), label="field")
    value = data.draw(bad_values(tp), label="value")
    with pytest.raises(ConfigError) as info:
        *parents, last = name.split(".")
        fields = {last: value}
        for parent in reversed(parents):
            fields = {parent: fields}
        validate({"algorithm": algo, section: fields})
    message = str(info.value)
    assert "\n" not in message
    assert f"'{section}.{name}'" in message, message
