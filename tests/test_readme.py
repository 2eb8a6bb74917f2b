"""README.md's commands stay true: CI runs exactly the README's test command."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _bash_blocks(text):
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("Run the tests:", 1)[1]
    command = _bash_blocks(section)[0].strip()
    assert "pytest" in command
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines


def test_ci_runs_the_readme_bazel_targets():
    readme = (ROOT / "README.md").read_text()
    command = _bash_blocks(readme.split("## Build and test with Bazel", 1)[1])[0].strip()
    config = command.rsplit(" test ", 1)[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "apt-get install -y -qq bazel-bootstrap" in command and "apt-get install -y -qq bazel-bootstrap" in ci
    assert f"test {config})" in ci
