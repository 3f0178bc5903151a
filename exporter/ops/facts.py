"""What `up` needs to know about this machine before it plans: the :class:`Facts`.

:func:`gather_facts` is the I/O (PATH, the environment's console scripts, the secrets
folder, the repository's configs); :mod:`exporter.ops.plan` only reads its result.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporter.ops import promconfig

#: Alertmanager binary names: Debian's package, then the upstream release.
ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")


@dataclass(frozen=True)
class Facts:
    """What planning needs to know about this machine (gathered by :func:`gather_facts`)."""

    #: The interpreter the children run with (``python -m exporter ...``).
    python: str
    #: Executable name -> path, or None when it is not installed.
    binaries: Mapping[str, str | None]
    #: Non-empty files present in the secrets folder.
    secrets: frozenset[str] = frozenset()
    #: The repository's prometheus.yml and alertmanager.yml, parsed (None outside a
    #: source checkout).
    prometheus_base: Mapping[str, Any] | None = None
    alertmanager_base: Mapping[str, Any] | None = None

    def binary(self, *names: str) -> str | None:
        """The path of the first of `names` that is installed, else None."""
        return next((self.binaries[n] for n in names if self.binaries.get(n)), None)


def _script(name: str) -> str | None:
    """A console script of this environment (beside the interpreter), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def _base(path: Path) -> Mapping[str, Any] | None:
    return promconfig.load_yaml(path) if path.is_file() else None


def gather_facts(secrets_dir: Path = Path("secrets")) -> Facts:
    """Look at this machine: binaries, secret files, the repository's configs."""
    names = ("prometheus", *ALERTMANAGER_BINARIES)
    binaries: dict[str, str | None] = {name: shutil.which(name) for name in names}
    binaries["optuna-dashboard"] = _script("optuna-dashboard")
    secrets = frozenset(
        name
        for name in (promconfig.SMTP_PASSWORD_FILE, promconfig.SLACK_WEBHOOK_FILE)
        if (secrets_dir / name).is_file() and (secrets_dir / name).stat().st_size > 0
    )
    return Facts(
        python=sys.executable,
        binaries=binaries,
        secrets=secrets,
        prometheus_base=_base(promconfig.PROMETHEUS_CONFIG),
        alertmanager_base=_base(promconfig.ALERTMANAGER_CONFIG),
    )
