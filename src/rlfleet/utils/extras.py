"""Optional dependencies: one clear line naming the extra that installs a missing one."""

from __future__ import annotations

import importlib.util

from rlfleet.errors import RlfleetError

#: What each extra brings, for error messages (the README's install table says the same).
EXTRAS = {
    "plot": ("matplotlib", "pandas"),
    "video": ("imageio", "imageio_ffmpeg"),
}


def require_extra(extra: str, feature: str) -> None:
    """RlfleetError naming ``pip install 'rlfleet[extra]'`` when a module of ``extra`` is
    missing; ``feature`` says what needed it (``rlfleet plot``)."""
    missing = [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]
    if missing:
        raise RlfleetError(
            f"{feature} needs {', '.join(missing)}, which this install lacks: pip install 'rlfleet[{extra}]'"
        )
