"""The package imports cleanly, and the README and CI agree on the test command."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_import_warns_nothing_about_torchrl_extension():
    code = (
        "import logging, warnings\n"
        "logging.basicConfig(level=logging.DEBUG)\n"
        "warnings.simplefilter('always')\n"
        "import torchrl_deltairis, torchrl_deltairis.envs, torchrl_deltairis.collectors, torchrl_deltairis.data\n"
        "print('imported', torchrl_deltairis.__version__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin"})
    assert "imported" in out.stdout
    text = (out.stdout + out.stderr).lower()
    for phrase in ("c++", "extension", "binaries", "prioritized"):
        assert phrase not in text, f"importing warned about {phrase!r}:\n{out.stderr}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = 'pip install torch==2.13.0 && pip install -e ".[test]" && python -m pytest'
    assert command in readme and command in ci
