"""Every Python example of the README and of docs/ runs as written, on a finished `params=smoke` run.

Each fenced ``python`` block is written to a file and run by a fresh interpreter in a folder where
``run`` is the session's smoke run (read only: the examples write their own stores beside it) and
``tests`` is this folder (the reference fixture one example loads). TorchRL's ``FutureWarning``s are
errors there: an example that TorchRL's next defaults would change must say how it stays put."""

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, RUN_ENV

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _examples() -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        text = page.read_text()
        for match in _BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            out.append((f"{page.relative_to(ROOT)}:{line}", match.group(1)))
    return out


EXAMPLES = _examples()


def test_the_readme_has_python_examples():
    assert len([name for name, _ in EXAMPLES if name.startswith("README.md")]) >= 4


@pytest.mark.parametrize("name, code", EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_the_example_runs_as_written(name, code, smoke_runs, tmp_path):
    (tmp_path / "run").symlink_to(smoke_runs[0])
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    script = tmp_path / "example.py"
    script.write_text(code)
    env = {**os.environ, **RUN_ENV, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-W", "error::FutureWarning", str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stderr[-3000:]}"
