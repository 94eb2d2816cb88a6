"""Hugging Face Hub ids for models and data sets, resolved through ``huggingface_hub``.

- A model id is ``org/name`` or ``org/name@revision`` (a branch, a tag or a commit).
- A data set id adds its config and split in maspo's ``name:key=value`` spec form:
  ``org/name[@revision][:config=C][,split=S]``, e.g. ``openai/gsm8k:config=main,split=test``
  (``maspo.data.hub_datasets`` picks them when they are not named).

Everything goes through ``huggingface_hub``, so its conventions hold as in transformers:
the shared cache (``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``),
``HF_HUB_OFFLINE=1`` (only the cache is read) and ``HF_TOKEN`` (private and gated
repositories). A local path that exists always wins: a spec is an id only when nothing
exists at that path and it reads as one (``org/name``, no leading ``.``, ``/`` or ``~``; a
data set id does not end in ``.jsonl``, ``.json`` or ``.parquet``, so a missing local file
is reported as missing).

A run pins what it resolved: ``org/name`` becomes ``org/name@<commit>`` in its saved
config (``maspo.run.pin_config``), so a resumed run, or ``maspo eval`` of one of its checkpoints,
reads exactly the files the run started with, whatever the repository's branch holds later.
Every failure (offline and not cached, not found, gated, no such revision, no connection)
is one ``UserError`` sentence naming the id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from maspo.errors import UserError
from maspo.formats import DATA_SUFFIXES  # a missing file named so is a local path
from maspo.spec_text import parse_named_spec

MODEL, DATASET = "model", "dataset"  # huggingface_hub's repo_type values
WHAT = {MODEL: "model", DATASET: "data set"}
DATASET_KEYS = ("config", "split")  # what a data set id may name after its ':'
PINNED_KEYS = {"model.path": MODEL, "data.path": DATASET, "data.test_path": DATASET}
"""Config keys whose hub ids a run pins to a commit (``maspo.run.pin_config``)."""

_REPO = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # org/name
_COMMIT = re.compile(r"[0-9a-f]{40}")  # a full git commit hash: immutable, nothing to resolve


@dataclass(frozen=True)
class HubId:
    """A repository on the Hub, at a revision (None: its default branch)."""

    kind: str  # MODEL or DATASET
    repo: str  # org/name
    revision: str | None = None  # branch, tag or commit
    config: str | None = None  # data sets: the config (None: picked, see hub_datasets)
    split: str | None = None  # data sets: the split (None: picked, see hub_datasets)

    def __str__(self) -> str:
        text = self.repo + (f"@{self.revision}" if self.revision else "")
        named = [f"{key}={getattr(self, key)}" for key in DATASET_KEYS
                 if getattr(self, key) is not None]
        return text + (":" + ",".join(named) if named else "")

    @property
    def label(self) -> str:
        """How sentences name it: ``model 'org/name@v2'``."""
        return f"{WHAT[self.kind]} {str(self)!r}"

    @property
    def pinned(self) -> bool:
        """Whether the revision is a commit (the files can no longer change)."""
        return self.revision is not None and _COMMIT.fullmatch(self.revision) is not None

    def at(self, commit: str) -> HubId:
        return dataclasses.replace(self, revision=commit)


def parse_hub_id(spec: str | None, kind: str) -> HubId | None:
    """The id ``spec`` names, or None when ``spec`` is a local path (it exists, or it does
    not read as an id). A spec that reads as an id but is malformed is a UserError."""
    if spec is None:
        return None
    text = str(spec).strip()
    if (not text or text.startswith((".", "/", "~")) or "\\" in text
            or Path(text).expanduser().exists()):
        return None
    name, sep, rest = text.partition(":")
    repo, at, revision = name.partition("@")
    if not _REPO.fullmatch(repo) or (kind == DATASET and repo.endswith(DATA_SUFFIXES)):
        return None
    if at and not revision.strip():
        raise UserError(f"{WHAT[kind]} id {text!r} has an empty revision after '@'.")
    if kind == MODEL:
        return None if sep else HubId(MODEL, repo, revision or None)
    try:
        _, settings = parse_named_spec(text, "data set id")
    except UserError:
        settings = {"": None}  # (refused just below, with the form to use)
    if any(key not in DATASET_KEYS for key in settings):
        raise UserError(f"data set id {text!r} must read org/name[@revision][:config=NAME]"
                        "[,split=NAME], e.g. openai/gsm8k:config=main,split=test.")
    values = {key: None if value is None else str(value) for key, value in settings.items()}
    return HubId(DATASET, repo, revision or None, **values)


# ---------------------------------------------------------------------------------------
# Fetching through huggingface_hub (imported late: a config error needs none of it).


def offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


@contextlib.contextmanager
def hub_errors(hub: HubId) -> Iterator[None]:
    """huggingface_hub's errors about ``hub`` as one UserError sentence each."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    label = hub.label
    unreachable = _transport_errors()
    try:
        yield
    except HFValidationError:
        raise UserError(f"{label} is not a valid Hugging Face repository id "
                        "(org/name: letters, digits, '-', '_', '.').") from None
    except LocalEntryNotFoundError:
        if offline():
            raise UserError(f"{label} is neither a local path nor in the Hugging Face cache "
                            f"{cache_dir()!r}, and HF_HUB_OFFLINE is set; download it once "
                            "online, or point HF_HUB_CACHE (or HF_HOME) at a cache that "
                            "holds it.") from None
        raise UserError(f"{label} is neither a local path nor in the Hugging Face cache "
                        f"{cache_dir()!r}, and the Hub could not be reached; check the "
                        "connection (or HF_ENDPOINT) and try again.") from None
    except GatedRepoError:
        raise UserError(f"{label} is gated on the Hugging Face Hub: accept its terms on its "
                        "page and set HF_TOKEN to a token of that account.") from None
    except RepositoryNotFoundError:
        raise UserError(f"{label} is neither a local path nor a repository on the Hugging "
                        "Face Hub (a private one needs HF_TOKEN).") from None
    except RevisionNotFoundError:
        raise UserError(f"{label}: the Hugging Face Hub repository {hub.repo!r} has no "
                        f"revision {hub.revision!r}.") from None
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        raise UserError(f"{label} could not be fetched from the Hugging Face Hub (HTTP "
                        f"{status or 'error'}); try again later.") from None
    except unreachable as err:
        raise UserError(f"{label} could not be fetched: the Hugging Face Hub could not be "
                        f"reached ({type(err).__name__}); check the connection, or set "
                        "HF_HUB_OFFLINE=1 to use the cache only.") from None
    except OSError as err:  # writing into the cache: disk full, permissions
        raise UserError(f"{label} could not be saved into the Hugging Face cache "
                        f"{cache_dir()!r} ({err.strerror or err}).") from None


def _transport_errors() -> tuple[type[BaseException], ...]:
    """What a lost connection raises: the builtins, and httpx's (huggingface_hub >= 1.0
    talks through httpx; its errors are no OSError)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    with contextlib.suppress(ImportError):
        import httpx

        errors.append(httpx.TransportError)
    return tuple(errors)


def snapshot(hub: HubId, patterns: list[str]) -> Path:
    """The local snapshot folder of ``hub`` at its revision (its name is the commit), with
    the repository files matching ``patterns`` downloaded, or found in the cache offline."""
    from huggingface_hub import snapshot_download

    def download(cache_only: bool) -> Path:
        return Path(snapshot_download(hub.repo, repo_type=hub.kind, revision=hub.revision,
                                      allow_patterns=patterns, local_files_only=cache_only))

    with hub_errors(hub):
        try:
            return download(offline())
        except _transport_errors():  # (a commit skips huggingface_hub's own fallback)
            if offline():
                raise
            return download(True)  # no connection: what the cache holds, as for a branch


def repo_files(hub: HubId, folder: Path) -> list[str]:
    """Every file of the repository at the snapshot ``folder``'s commit, as repository
    paths; offline (or when the Hub cannot be reached), the files the cache holds."""
    if not offline():
        from huggingface_hub import HfApi

        with hub_errors(hub):
            try:
                return sorted(HfApi().list_repo_files(hub.repo, repo_type=hub.kind,
                                                      revision=folder.name))
            except _transport_errors():
                pass  # the Hub cannot be reached now: the cache is what there is
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def fetch(hub: HubId, folder: Path, names: list[str]) -> list[Path]:
    """The local copies of the repository files ``names`` in snapshot ``folder``,
    downloaded when online; a file the cache lacks offline is a UserError."""
    if names and not offline():
        snapshot(hub.at(folder.name), [glob.escape(name) for name in names])
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise UserError(f"the Hugging Face cache holds {hub.label} at commit "
                        f"{folder.name[:12]} without its file {missing[0]!r}, and "
                        f"{'HF_HUB_OFFLINE is set' if offline() else 'it could not be fetched'}"
                        "; download it once online.")
    return [folder / name for name in names]


# ---------------------------------------------------------------------------------------
# Pinning: a run records the commit each of its hub ids resolved to.

PIN_PROBE = {MODEL: ["config.json"], DATASET: ["README.md"]}  # fetched to learn the commit


def pin(spec: str | None, kind: str) -> str | None:
    """``spec`` with its hub id's revision resolved to a commit (``org/name@<commit>``);
    a local path, or an id already at a commit, unchanged."""
    hub = parse_hub_id(spec, kind)
    if hub is None or hub.pinned:
        return spec
    return str(hub.at(snapshot(hub, PIN_PROBE[kind]).name))


def keeps_pin(saved: object, given: object, kind: str) -> bool:
    """Whether ``given`` repeats the pinned id ``saved`` (the same repository, config and
    split, with no revision, a branch or tag, or the same commit): a resumed run then
    keeps the commit it started from."""
    was = parse_hub_id(saved, kind) if isinstance(saved, str) else None
    now = parse_hub_id(given, kind) if isinstance(given, str) else None
    if was is None or now is None or not was.pinned:
        return False
    same = dataclasses.replace(now, revision=was.revision) == was
    return same and (not now.pinned or now.revision == was.revision)
