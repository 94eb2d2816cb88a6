"""Data sets on the Hugging Face Hub: the files of one config and split, read by maspo's own
file readers (``maspo.data.files``), so a hub data set loads exactly as the same file
would from disk: the same published-format detection, the same sentences for a bad row.

Why not ``datasets.load_dataset``: offline it reads only its own processed Arrow cache,
not the Hub's file cache that transformers and huggingface_hub share, so a data set
downloaded with ``hf download`` (or by another tool) would still be "not found" with
``HF_HUB_OFFLINE=1``; and it would convert every file into a second copy in that cache.
Fetching the repository's files with ``huggingface_hub`` keeps one cache and one reader.

Which files (as the Hub's own data viewer reads a repository):
- the configs of the README's YAML header (``configs:``, each with ``config_name``,
  ``data_files`` as a pattern, a list of them or ``split``/``path`` pairs, ``data_dir``,
  ``default: true``); without one, a single ``default`` config whose splits come from
  file and folder names: ``train``/``training``, ``validation``/``valid``/``val``/``dev``,
  ``test``/``testing``/``eval``/``evaluation`` at the start of a name or after ``-._ `` or a
  digit (``data/train-00000-of-00001.parquet``, ``test.jsonl``, ``gsm8k_test.json``); with
  no such name at all, every data file is the ``train`` split;
- data files are ``.jsonl``, ``.json`` and ``.parquet`` (what maspo reads), never hidden
  ones or dataset metadata (``dataset_info.json``...); a split published in several of
  those formats is read from the first of Parquet, JSONL, JSON.

With no config named, a repository's only config (or the one marked ``default``) is used;
with no split named, ``train`` for training, ``test`` for a held-out set or an evaluation,
else the repository's only split. Anything else is a UserError that lists the choices.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from maspo.errors import UserError
from maspo.formats import DATA_SUFFIXES
from maspo.hub import DATASET, HubId, fetch, repo_files, snapshot

README = "README.md"
METADATA_FILES = frozenset({"dataset_info.json", "dataset_infos.json", "dataset_dict.json",
                            "state.json"})
DEFAULT_CONFIG = "default"
SPLIT_WORDS = {"train": ("train", "training"),
               "validation": ("validation", "valid", "val", "dev"),
               "test": ("test", "testing", "eval", "evaluation")}
_SEPARATOR = "[-._ 0-9]"

SplitFiles = dict[str, list[str]]  # split -> repository paths of its files


@dataclass(frozen=True)
class HubData:
    """The files of one config and split of a hub data set, at a commit."""

    hub: HubId  # all of it named: commit, config and split
    files: list[tuple[Path, str]]  # (local copy, path in the repository), in order


def fetch_dataset(hub: HubId, default_split: str) -> HubData:
    """The files of the config and split ``hub`` names (or picks, see the module doc),
    downloaded or found in the cache."""
    folder = snapshot(hub, [README])
    names = repo_files(hub, folder)
    readme = folder / README
    configs, default = dataset_configs(readme.read_text(encoding="utf-8", errors="replace")
                                       if readme.is_file() else "", names, hub)
    config = _pick_config(hub, configs, default)
    splits = configs[config]
    split = _pick_split(hub, config, splits, default_split)
    names = one_format(splits[split])
    paths = fetch(hub, folder, names)
    named = dataclasses.replace(hub, revision=folder.name, config=config, split=split)
    return HubData(named, list(zip(paths, names, strict=True)))


def one_format(names: list[str]) -> list[str]:
    """The files of the first of Parquet, JSONL, JSON that ``names`` hold (a split
    published in two formats holds the same rows twice)."""
    for suffix in DATA_SUFFIXES:
        chosen = [name for name in names if name.endswith(suffix)]
        if chosen:
            return chosen
    return names


def _pick_config(hub: HubId, configs: dict[str, SplitFiles], default: str | None) -> str:
    if not configs:
        raise UserError(f"{hub.label} has no .jsonl, .json or .parquet data files (maspo "
                        "reads those); point data.path at a local copy in one of them.")
    if hub.config is not None:
        if hub.config not in configs:
            raise UserError(f"{hub.label} has no config {hub.config!r}; it has "
                            f"{', '.join(configs)}.")
        return hub.config
    if len(configs) == 1:
        return next(iter(configs))
    if default is not None:
        return default
    first = next(iter(configs))
    raise UserError(f"{hub.label} has the configs {', '.join(configs)}; name one, e.g. "
                    f"'{hub.repo}:config={first}'.")


def _pick_split(hub: HubId, config: str, splits: SplitFiles, default_split: str) -> str:
    if hub.split is not None:
        if hub.split not in splits:
            raise UserError(f"{hub.label} has no split {hub.split!r} in config {config!r}; it "
                            f"has {', '.join(splits)}.")
        return hub.split
    if default_split in splits:
        return default_split
    if len(splits) == 1:
        return next(iter(splits))
    raise UserError(f"{hub.label} has no {default_split!r} split in config {config!r}; name "
                    f"one of {', '.join(splits)}, e.g. '{hub.repo}:config={config},"
                    f"split={next(iter(splits))}'.")


# ---------------------------------------------------------------------------------------
# Configs and splits of a repository's file list.


def data_files(names: list[str]) -> list[str]:
    """The repository paths maspo can read as data (see the module doc)."""
    return [name for name in names
            if name.endswith(DATA_SUFFIXES) and name.rsplit("/", 1)[-1] not in METADATA_FILES
            and not any(part.startswith((".", "_")) for part in name.split("/"))]


def dataset_configs(readme: str, names: list[str], hub: HubId
                    ) -> tuple[dict[str, SplitFiles], str | None]:
    """({config: {split: files}}, the config marked default or None) of a repository
    whose README is ``readme`` and whose files are ``names``."""
    files = data_files(names)
    declared = _readme_configs(readme, hub)
    if not declared:
        splits = splits_by_name(files)
        return ({DEFAULT_CONFIG: splits} if splits else {}), None
    configs: dict[str, SplitFiles] = {}
    default = None
    for entry in declared:
        if not isinstance(entry, dict) or not isinstance(entry.get("config_name", ""), str):
            raise UserError(f"{hub.label} has a README 'configs' entry maspo cannot read: "
                            f"{entry!r}.")
        name = entry.get("config_name") or DEFAULT_CONFIG
        if entry.get("default") is True:
            default = name
        patterns = _split_patterns(entry, hub)
        if patterns is None:  # no data_files: names decide the splits (under data_dir)
            folder = str(entry.get("data_dir", "")).strip("/")
            splits = splits_by_name([f for f in files
                                     if not folder or f.startswith(f"{folder}/")])
        else:
            splits = {split: sorted({f for f in files for p in globs if _matches(p, f)})
                      for split, globs in patterns.items()}
            splits = {split: found for split, found in splits.items() if found}
        if splits:
            configs[name] = splits
    return configs, default


def _readme_configs(readme: str, hub: HubId) -> list:
    """The ``configs`` list of the README's YAML header ([] when there is none)."""
    if not readme.startswith("---"):
        return []
    header = readme[3:].split("\n---", 1)[0]
    try:
        meta = yaml.safe_load(header) or {}
    except yaml.YAMLError:
        raise UserError(f"{hub.label} has a README.md whose YAML header cannot be read; "
                        "point data.path at a local copy of its data files.") from None
    configs = meta.get("configs", []) if isinstance(meta, dict) else []
    return configs if isinstance(configs, list) else []


def _split_patterns(entry: dict, hub: HubId) -> dict[str, list[str]] | None:
    """{split: file patterns} of one README config (None: it names no data_files)."""
    spec = entry.get("data_files")
    if spec is None:
        return None
    prefix = str(entry.get("data_dir", "")).strip("/")
    prefix = f"{prefix}/" if prefix else ""
    if isinstance(spec, (str, list)) and all(isinstance(p, str) for p in _listed(spec)):
        return {"train": [prefix + p for p in _listed(spec)]}
    items = spec.items() if isinstance(spec, dict) else [
        (item.get("split"), item.get("path")) for item in spec if isinstance(item, dict)]
    patterns: dict[str, list[str]] = {}
    for split, path in items:
        if not isinstance(split, str) or not all(isinstance(p, str) for p in _listed(path)):
            raise UserError(f"{hub.label} has a README 'data_files' entry maspo cannot read: "
                            f"{spec!r}.")
        patterns.setdefault(split, []).extend(prefix + p for p in _listed(path))
    return patterns


def _listed(value: object) -> list:
    return value if isinstance(value, list) else [value]


def _matches(pattern: str, name: str) -> bool:
    """Whether repository path ``name`` matches ``pattern`` (``*`` within a folder, ``**``
    across folders, a plain folder name matches the files under it)."""
    pattern = pattern.strip().lstrip("./").rstrip("/") or "**"
    regex, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        else:
            regex += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
            i += 1
    return re.fullmatch(regex + "(?:/.*)?", name) is not None


def _split_of(name: str) -> str | None:
    """The split a file's path names (its first folder or file name that does), or None."""
    for part in name.lower().split("/"):
        for split, words in SPLIT_WORDS.items():
            for word in words:
                if re.search(f"(?:^|{_SEPARATOR}){word}(?:{_SEPARATOR}|$)", part):
                    return split
    return None


def splits_by_name(files: list[str]) -> SplitFiles:
    """{split: files} by the split words in their paths (no split word anywhere: all
    files are ``train``); in the order train, validation, test."""
    named = {name: _split_of(name) for name in files}
    if not any(named.values()):
        return {"train": sorted(files)} if files else {}
    splits = {split: sorted(f for f, s in named.items() if s == split) for split in SPLIT_WORDS}
    return {split: found for split, found in splits.items() if found}


def parse_dataset_id(spec: str | None) -> HubId | None:
    """The hub data set id ``spec`` names, or None for a local path (see maspo.hub)."""
    from maspo.hub import parse_hub_id

    return parse_hub_id(spec, DATASET)
