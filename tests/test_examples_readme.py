"""The README's "Testing your application" examples: each is a file in examples/, found
verbatim in the README, and run here with pytest in a subprocess, so the documented code is
the tested code (the fixtures come from the installed plugin, as in a user's project)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("test_*.py"))

pytestmark = pytest.mark.timeout(120)


def readme_code_blocks() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("\n## Testing your application\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_there_are_the_four_examples() -> None:
    assert {p.name for p in EXAMPLE_FILES} == {
        "test_pika_example.py", "test_aiopika_example.py", "test_celery_example.py",
        "test_unittest_example.py"}


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_each_example_is_in_the_readme_verbatim(path: Path) -> None:
    assert path.read_text() in readme_code_blocks(), \
        f"README's 'Testing your application' has no code block equal to {path.name}"


def test_every_readme_example_is_a_file() -> None:
    files = {p.read_text() for p in EXAMPLE_FILES}
    for block in readme_code_blocks():
        assert block in files, f"a README example is not in examples/:\n{block}"


def run_examples(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "AMQP_TEST_")) and k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           "--rootdir", str(EXAMPLES), "-c", os.devnull, *args],
                          cwd=EXAMPLES, env=env, capture_output=True, text=True, timeout=110)


def test_the_examples_pass_with_pytest() -> None:
    result = run_examples(*(p.name for p in EXAMPLE_FILES))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"\b5 passed\b", output), output


def test_the_unittest_example_runs_without_pytest() -> None:
    result = subprocess.run([sys.executable, "test_unittest_example.py"], cwd=EXAMPLES,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stderr
