"""A real ``twistd -n ahtwist`` for end-to-end tests: :mod:`ahtwist.testing.process`,
run from the repository (the checkout's default config and sample actions)."""

import subprocess
from pathlib import Path

from ahtwist.testing import process
from ahtwist.testing.process import TWISTD, free_port, wait_port

__all__ = ["REPO", "TWISTD", "Twistd", "free_port", "run_twistd", "wait_port"]

REPO = Path(__file__).resolve().parents[2]


class Twistd(process.Twistd):
    """:class:`ahtwist.testing.Twistd` started in the repository."""

    def __init__(self, *args: str, cwd: Path | str | None = REPO, **kw) -> None:
        super().__init__(*args, cwd=cwd, **kw)


def run_twistd(*args: str, timeout: float = 30, cwd: Path | str | None = REPO) -> subprocess.CompletedProcess:
    return process.run_twistd(*args, timeout=timeout, cwd=cwd)
