"""Errors that the CLI reports as one clear line (no traceback) with a non-zero exit."""


class RlfleetError(Exception):
    """Base class for user-facing errors."""


class ConfigError(RlfleetError):
    """Bad configuration: unknown key, wrong type, unknown algorithm or env, bad import path."""


class CheckpointError(RlfleetError):
    """A checkpoint that is missing, corrupt, truncated or from an incompatible run."""


class RunFailure(RlfleetError):
    """A fault that stopped a training run. ``str()`` is one line: the fault, then what the
    runner did about it (``details``, set where the runner catches it: where the traceback is,
    which checkpoint holds the run)."""

    details: list[str] | tuple[str, ...] = ()

    def summary(self) -> str:
        return super().__str__()

    def __str__(self) -> str:
        return "; ".join([self.summary(), *self.details])


class EnvError(RunFailure):
    """A user env raised in ``step`` or ``reset`` (``error``: the exception's repr). The runner
    saves the full traceback to ``error.log`` in the run directory and writes a checkpoint."""

    def __init__(self, env: str, method: str, error: str):
        super().__init__(env, method, error)
        self.env, self.method, self.error = env, method, error

    def summary(self) -> str:
        return f"env {self.env} raised {self.error} in {self.method}"


class NonFiniteError(RunFailure):
    """NaN or Inf in a loss (``in_parameters=False``) or, after a finite loss's step, in the
    parameters. ``loss_name`` is the loss's progress.csv column, ``at`` where it happened
    (``at update 37, 1184 env steps``): both are filled in by the runner when not known here.
    No checkpoint is written after it."""

    def __init__(self, loss_name: str | None, loss: float, grad_norm: float, in_parameters: bool):
        super().__init__(loss_name, loss, grad_norm, in_parameters)
        self.loss_name, self.loss, self.grad_norm, self.in_parameters = loss_name, loss, grad_norm, in_parameters
        self.at = ""

    def summary(self) -> str:
        name = self.loss_name or "loss"
        if self.in_parameters:
            values = f"{name} {self.loss:.4g}, grad_norm {self.grad_norm:.4g}"
            text = f"non-finite parameters after the {name} step ({values})"
        else:
            text = f"non-finite {name} ({self.loss:.4g})"
        return f"{text} {self.at}" if self.at else text


class SamplerWorkerDied(RunFailure):
    """A sampler worker process died (killed, or crashed without a Python exception)."""
