"""Every command the README gives for a `make run` installation works as printed: in a
shell without DEBUG or SECRET_KEY set (what `make run` sets up is the Makefile's job)."""

import os
import re
import shlex
import subprocess

import pytest

from tests.system.conftest import ROOT

pytestmark = pytest.mark.system

README = (ROOT / "README.md").read_text()
# Never reinstall the virtualenv from a test (the stamp is taken as up to date).
MAKE = ["make", "--no-print-directory", "-o", ".venv/.installed"]


def readme_make_commands() -> list[str]:
    """`make ...` as the README writes them, in code blocks and inline code."""
    found = re.findall(r"^(make [^#\n]+?)\s*(?:#.*)?$", README, re.M)
    found += re.findall(r"`(make [^`]+)`", README)
    return [" ".join(command.split()) for command in found]


def make(environ, command: str) -> subprocess.CompletedProcess:
    args = shlex.split(command)
    assert args[0] == "make"
    return subprocess.run(
        [*MAKE, *args[1:]], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def shell(tmp_path):
    """The operator's shell: the project's settings come from the Makefile alone."""
    environ = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DEBUG", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
    }
    environ["STATEHOUSE_VAR_DIR"] = str(tmp_path)
    for step in ('make manage CMD="migrate --noinput"', "make manage CMD=ensure_admin"):
        done = make(environ, step)
        assert done.returncode == 0, done.stderr
    return environ


def test_the_readme_creates_an_api_key_as_printed(shell):
    commands = [c for c in readme_make_commands() if c.startswith("make api-key")]
    assert commands == ["make api-key OWNER=admin NAME=laptop"] * len(commands) and commands
    done = make(shell, commands[0])
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"sh_\S+", done.stdout.strip().splitlines()[-1]), done.stdout
    count = 'ApiKey.objects.filter(owner__username=\\"admin\\", name=\\"laptop\\").count()'
    check = make(
        shell, f"make manage CMD='shell -c \"from core.models import ApiKey; print({count})\"'"
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip().splitlines()[-1] == "1"


def test_the_readme_runs_manage_commands_in_the_make_run_environment(shell):
    assert 'make manage CMD="changepassword admin"' in readme_make_commands()
    done = make(shell, 'make manage CMD="check"')
    assert done.returncode == 0, done.stderr
    # Without the Makefile, the same command needs a SECRET_KEY: what the README warned of.
    bare = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "manage.py", "check"],
        cwd=ROOT,
        env=shell,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bare.returncode != 0


def test_the_readme_says_how_to_serve_on_another_host_and_port():
    assert "make run HOST=0.0.0.0 PORT=8080" in readme_make_commands()
    done = subprocess.run(
        [*MAKE, "-n", "run", "HOST=0.0.0.0", "PORT=8080"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "manage.py serve --host 0.0.0.0 --port 8080" in done.stdout
