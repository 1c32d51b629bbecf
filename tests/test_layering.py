"""The package's layering, in one line, enforced on every import statement (top-level or inside a function):

    keys, functional, compat, config_resolvers, checked → modules → policy → objectives | envs | data → collectors → the run

A module imports only from its own layer or the layers before it; the three packages of the middle layer
do not import each other; nothing in the package imports ``benchmarks``, ``tests`` or ``train``. The run's
layer (build, cli, trainer, evaluation, reference, play, ...) is everything not named here.
In words: the networks do not know their losses, the losses and envs do not know how data is stored or
collected, and only the run puts them together.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "torchrl_deltairis"
LAYERS = [("keys", "functional", "compat", "config_resolvers", "checked"), ("modules",), ("policy",),
          ("objectives", "envs", "data"), ("collectors",)]
RUN = len(LAYERS)  # every other module of the package
SIDE_BY_SIDE = {"objectives", "envs", "data"}  # one layer, independent of each other


def layer(part: str) -> int:
    return next((i for i, names in enumerate(LAYERS) if part in names), RUN)


def imports(path: Path) -> list[str]:
    """Every module ``path`` imports (absolute imports; the package uses no relative ones)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: a relative import"
            found += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def _part(module: str) -> str | None:
    """The package's top-level part a dotted module name falls in (``torchrl_deltairis.envs.atari`` →
    ``envs``), None outside the package or for the package itself."""
    pieces = module.split(".")
    if pieces[0] != "torchrl_deltairis" or len(pieces) < 2:
        return None
    name = pieces[1]
    return name if (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file() else None


FILES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_module_imports_only_from_its_layer_or_below(path):
    rel = path.relative_to(PACKAGE)
    own = rel.parts[0].removesuffix(".py") if rel.parts[0] != "__init__.py" else None
    bad = []
    for module in imports(path):
        if module.split(".")[0] in ("benchmarks", "tests", "train", "conftest"):
            bad.append(module)
        part = _part(module)
        if own is None or part is None or part == own:
            continue
        if layer(part) > layer(own) or (own in SIDE_BY_SIDE and part in SIDE_BY_SIDE):
            bad.append(module)
    assert not bad, f"{rel} (layer {layer(own) if own else '-'}) imports {sorted(set(bad))}"


def test_the_layers_name_real_parts_of_the_package():
    for names in LAYERS:
        for name in names:
            assert (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file(), name
