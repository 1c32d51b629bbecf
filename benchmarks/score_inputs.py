"""The inputs of aggregate.py: agent tables (``{"Alien": [694, 607, ...], ...}``) and run records
(``{"agent", "game", "seed", "score"}``, one finished run each, e.g. a run folder's ``results.json``), read
from files and folders and merged into one table per agent, then checked against the games asked for
(the formats: aggregate.py's docstring).
"""

import json
import re
import sys
from pathlib import Path

NORMALISERS = ("HUMAN", "RANDOM")  # the normalisation tables beside the agents' (not agents)
RUN_KEYS = {"agent", "game", "seed", "score"}
Table = dict[str, list[float]]


class AggregateError(ValueError):
    """An input problem, reported to the user without a traceback."""


def game_name(game_id: str) -> str:
    """``ALE/Breakout-v5``, ``BreakoutNoFrameskip-v4`` → ``Breakout``."""
    return re.sub(r"(NoFrameskip|Deterministic)?-v\d+$", "", game_id.removeprefix("ALE/"))


def _is_record(obj: object) -> bool:
    return isinstance(obj, dict) and RUN_KEYS <= obj.keys()


RESULTS_FILE = "results.json"  # what train.py writes into a run folder when the run finishes
RUN_FOLDER_MARKERS = (RESULTS_FILE, "config/trainer.yaml", ".hydra")


def _is_table(obj: object) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, list) for v in obj.values())


def _run_folders(root: Path) -> set[Path]:
    """Folders below ``root`` that are training runs: their JSON files other than results.json are not ours."""
    return {marker_path.parents[len(Path(marker).parts) - 1]
            for marker in RUN_FOLDER_MARKERS for marker_path in root.rglob(marker)}


def _json_files(path: Path) -> list[tuple[Path, bool]]:
    """(file, named) pairs: ``named`` files must be tables or records; files found in a folder may be
    something else (skipped). Inside run folders only ``results.json`` is read."""
    if path.is_file():
        return [(path, True)]
    if not path.is_dir():
        raise AggregateError(f"{path}: no such file or folder")
    runs = _run_folders(path)
    files = []
    for file in sorted(path.rglob("*.json")):
        if file.stem in NORMALISERS:
            continue
        if file.name == RESULTS_FILE:
            files.append((file, True))
        elif not any(run in file.parents for run in runs):
            files.append((file, False))
    return files


def _load(file: Path, named: bool) -> object | None:
    """The file's JSON; None for an unreadable or unrelated file found in a folder scan."""
    try:
        obj = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        if named:
            raise AggregateError(f"{file}: not valid JSON ({err})") from None
        return None
    if _is_record(obj) or (isinstance(obj, list) and obj and all(map(_is_record, obj))) or _is_table(obj):
        return obj
    if named:
        what = "a run record" if file.name == RESULTS_FILE else "an agent table nor run records"
        raise AggregateError(f"{file}: neither {what} (see --help)")
    return None


def merge_runs(records: list[dict]) -> dict[str, Table]:
    """Run records → {agent: {game: [scores ordered by seed]}}."""
    seen: dict[tuple[str, str, object], object] = {}
    for rec in records:
        key = (str(rec["agent"]), game_name(str(rec["game"])), rec["seed"])
        if key in seen:
            raise AggregateError(f"run counted twice: agent {key[0]}, game {key[1]}, seed {key[2]}")
        seen[key] = rec["score"]
    tables: dict[str, Table] = {}
    by_seed = sorted(seen.items(), key=lambda kv: (*kv[0][:2], isinstance(kv[0][2], str), kv[0][2]))
    for (agent, game, _), score in by_seed:
        tables.setdefault(agent, {}).setdefault(game, []).append(score)
    return tables


def _add(tables: dict[str, Table], name: str, table: Table, source: str) -> None:
    if name in tables:
        raise AggregateError(f"agent {name!r} given twice (again in {source}); rename one with NAME=PATH")
    tables[name] = table


def read_inputs(specs: list[str]) -> dict[str, Table]:
    """Positional inputs (``[NAME=]PATH``) → {agent: {game: [scores]}}, in the order given."""
    tables: dict[str, Table] = {}
    for spec in specs:
        rename, _, path = spec.partition("=") if "=" in spec and not Path(spec).exists() else ("", "", spec)
        records: list[dict] = []
        skipped = []
        for file, named in _json_files(Path(path)):
            obj = _load(file, named)
            if obj is None:
                skipped.append(file.name)
            elif _is_table(obj) and not _is_record(obj):
                _add(tables, rename or file.stem, obj, str(file))
            else:
                records += [r for r in (obj if isinstance(obj, list) else [obj])
                            if r.get("family", "atari") == "atari"]
        if skipped:
            print(f"note: {path}: skipped {len(skipped)} JSON files that are neither agent tables nor run "
                  f"records: {', '.join(sorted(set(skipped))[:5])}{' ...' if len(set(skipped)) > 5 else ''}",
                  file=sys.stderr)
        for agent, table in merge_runs(records).items():
            _add(tables, rename or agent, table, path)
    return tables


def validate(tables: dict[str, Table], games: list[str], known: set[str]) -> None:
    """Raise with the list of unknown, missing or empty games, or uneven run counts, of each agent."""
    problems = []
    for agent, table in tables.items():
        if unknown := sorted(set(table) - known):
            problems.append(f"{agent}: unknown games {unknown}")
        if missing := [g for g in games if g not in table]:
            problems.append(f"{agent}: missing games {missing}")
        if empty := [g for g in games if g in table and not table[g]]:
            problems.append(f"{agent}: games with no runs {empty}")
        if bad := [g for g in games if not all(type(s) in (int, float) for s in table.get(g, []))]:
            problems.append(f"{agent}: non-numeric scores in games {bad}")
        counts = {len(table[g]) for g in games if table.get(g)}
        if len(counts) > 1:
            problems.append(f"{agent}: uneven runs per game {sorted(counts)} (rliable needs runs × games)")
    if problems:
        raise AggregateError("\n".join(problems))
