"""`ruff check` (rules: pyproject.toml [tool.ruff]) passes on the package, tests, benchmarks and
experiments. ruff is in the test extras, so a missing ruff is a failure, not a skip."""

import importlib.util
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATHS = ["jaxprune", "tests", "benchmarks", "experiments"]


def test_ruff_check_passes():
    assert importlib.util.find_spec("ruff") is not None, (
        "ruff is not installed: pip install -e '.[test]' (it is in the test extras)"
    )
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", *PATHS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, f"ruff check failed:\n{out.stdout}\n{out.stderr}"


def test_ruff_uses_the_project_rules():
    # ruff reads this repository's [tool.ruff] (not a user-level config or its defaults)
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--show-settings", "jaxprune/__init__.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert f'Settings path: "{os.path.join(ROOT, "pyproject.toml")}"' in out.stdout
    assert "linter.line_length = 120" in out.stdout


def test_ruff_format_check_passes():
    # one code style: `ruff format` (pyproject [tool.ruff]) leaves every file unchanged
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", *PATHS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, f"ruff format --check failed (run `ruff format`):\n{out.stdout}\n{out.stderr}"
