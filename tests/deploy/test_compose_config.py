"""``docker compose config``: compose itself validates docker-compose.yml and the GPU override.

It needs compose's CLI only (no daemon, no network). That is the docker CLI's compose plugin
(``docker compose``), or the standalone ``docker-compose`` that Debian bookworm packages;
without either the tests skip and say so (``.ci/run`` installs Debian's when it can).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from tests.deploy import stack

pytestmark = pytest.mark.unit

#: Every profile, so that config checks the services a profile hides too.
ALL_PROFILES = "livekit,tts,models"


@cache
def compose_cli() -> tuple[str, ...] | None:
    """The compose command line available here, or None."""
    if shutil.which("docker"):
        try:
            done = subprocess.run(
                ["docker", "compose", "version"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            pass
        else:
            if done.returncode == 0:
                return ("docker", "compose")
    # Not asked for its version: it is Python, and each start costs about a second.
    return ("docker-compose",) if shutil.which("docker-compose") else None


@dataclass(frozen=True)
class Result:
    """How one ``compose config`` run ended."""

    returncode: int
    stderr: str


def start_config(env_file: Path, *files: Path) -> subprocess.Popen[str]:
    """Start ``compose --env-file ENV -f FILE... config -q`` in the repository, with this
    shell's settings left out (they would override the env file)."""
    cli = compose_cli()
    assert cli is not None
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith((*stack.SETTINGS_PREFIXES, "COMPOSE_"))
    }
    args = [*cli, "--env-file", str(env_file)]
    for path in files:
        args += ["-f", str(path)]
    return subprocess.Popen(
        [*args, "config", "-q"],
        cwd=stack.REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def write_env(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    """Every case's run, started together: each costs compose's start-up, about a second."""
    if compose_cli() is None:
        pytest.skip(
            "no compose CLI: neither `docker compose` (the docker CLI's compose plugin) nor "
            "`docker-compose` is installed"
        )
    folder = tmp_path_factory.mktemp("compose")
    filled = write_env(folder / "filled", {**stack.stack_env(), "COMPOSE_PROFILES": ALL_PROFILES})
    unfilled = write_env(folder / "unfilled", stack.read_env_example().active)
    started = {
        "compose": start_config(filled, stack.COMPOSE),
        "compose+gpu": start_config(filled, stack.COMPOSE, stack.GPU_OVERRIDE),
        "unfilled": start_config(unfilled, stack.COMPOSE),
    }
    out: dict[str, Result] = {}
    for name, process in started.items():
        try:
            _, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        out[name] = Result(process.returncode, stderr)
    return out


@pytest.mark.parametrize("case", ["compose", "compose+gpu"])
def test_compose_accepts_the_stack(results: dict[str, Result], case: str) -> None:
    assert results[case].returncode == 0, results[case].stderr


def test_compose_refuses_an_env_left_unfilled(results: dict[str, Result]) -> None:
    done = results["unfilled"]
    assert done.returncode != 0
    # It names a secret that is still empty, in its own words.
    assert any(name in done.stderr for name in ("ROOMSCRIBE_SECRET", "LIVEKIT_API_KEY")), (
        done.stderr
    )
