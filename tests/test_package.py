"""The promises to a new user: the README's commands, CI, the layout."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_bash_blocks():
    return re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_ci_runs_the_readme_test_command_exactly():
    blocks = [b.strip() for b in readme_bash_blocks()]
    test_command = next(b for b in blocks if "pytest" in b)
    ci_lines = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    assert test_command in ci_lines


def test_readme_python_example_runs():
    (example,) = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    namespace: dict = {}
    exec(compile(example.replace("print(", "str("), "README.md", "exec"), namespace)
    assert namespace["sigma"].shape == (1024, 64, 1)
    assert namespace["section"].shape == (1024, 63, 1)


def test_layout():
    for path in ("autoint_cli/__init__.py", "autoint_cli/autoint/__init__.py", "scripts", "configs", "setup.cfg", "pyproject.toml", "data/README.md", "logs/README.md"):
        assert (ROOT / path).exists(), path
    ignored = (ROOT / ".gitignore").read_text()
    assert "data/*" in ignored and "logs/*" in ignored
