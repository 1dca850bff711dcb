"""Pretrained dictionaries from the Hugging Face hub: ``org/repo[/sub/folder]`` ->
a local folder under the cache, fetching only the sub-folder's files.

The cache folder is ``$INTERP_CACHE/pretrained`` (``~/.cache/interp/pretrained``), one
folder per repository, files at their repository paths: ``<cache>/<org>/<repo>/<sub>``.
That is also where files placed by hand are found, so an offline machine needs only a
copy of the sub-folder there (or the local folder passed as the source).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(/[\w.=-]+)*")
_TRUE = ("1", "true", "yes", "on")
_WEIGHT_FILES = ("sae.safetensors", "sae_weights.safetensors", "params.npz")


class HubUnavailable(FileNotFoundError):
    """A hub id that could not be fetched (offline, no network, unknown repo)."""


class HubAmbiguous(ValueError):
    """A hub id holding several dictionaries, none named: nothing is downloaded."""


def default_cache_dir() -> Path:
    """``$INTERP_CACHE/pretrained`` (the project's cache root, see interp.models.provision)."""
    from interp.models.provision import cache_dir

    return cache_dir() / "pretrained"


def looks_like_hub_id(source: str) -> bool:
    """``source`` is not an existing path and reads as ``org/repo[/sub/folder]``."""
    return not Path(source).expanduser().exists() and bool(_HUB_ID.fullmatch(source))


def split_hub_id(source: str) -> tuple[str, str]:
    """``org/repo/sub/folder`` -> (``org/repo``, ``sub/folder``)."""
    org, repo, *sub = source.split("/")
    return f"{org}/{repo}", "/".join(sub)


def local_folder(source: str, cache_dir: Path | None = None) -> Path:
    """Where the files of hub id ``source`` live once fetched (or placed by hand)."""
    repo_id, sub = split_hub_id(source)
    root = (cache_dir or default_cache_dir()) / repo_id
    return root / sub if sub else root


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def _unavailable(source: str, folder: Path, why: str) -> HubUnavailable:
    return HubUnavailable(
        f"{source!r} is no local path and cannot be fetched from the hub ({why}): copy its files "
        f"by hand into {folder} (keeping the repository's layout below it), or pass the "
        "local folder that holds them as sae.path"
    )


def fetch(source: str, cache_dir: Path | None = None, hookpoint: str | None = None) -> Path:
    """The local folder of hub id ``source``, with the files of its one dictionary that
    ``hookpoint`` names (a folder below it: ``layers.6``, ``layer_20/width_16k``; our
    ``layers.N`` also finds Gemma Scope's ``layer_N``), or of the only one it holds. A
    source holding several and no hookpoint naming one folder is refused before
    anything is downloaded. Offline or unreachable: what the cache already holds
    (fetched before, or placed by hand)."""
    folder = local_folder(source, cache_dir)
    cached = folder.is_dir() and any(folder.iterdir())
    if _offline():
        if cached:
            return folder
        raise _unavailable(source, folder, "HF_HUB_OFFLINE is set")
    repo_id, sub = split_hub_id(source)
    try:
        from huggingface_hub import HfApi, snapshot_download

        wanted = _wanted(source, HfApi().list_repo_files(repo_id), sub, hookpoint)
        snapshot_download(
            repo_id,
            allow_patterns=[f"{wanted}/**"] if wanted else None,
            local_dir=(cache_dir or default_cache_dir()) / repo_id,
        )
    except HubAmbiguous:
        raise
    except Exception as err:  # offline, DNS, 404, auth, not installed: one message
        if cached:
            log.warning("%s: hub unreachable (%s); using the cached %s", source, err, folder)
            return folder
        raise _unavailable(source, folder, f"{type(err).__name__}: {err}".splitlines()[0]) from None
    if not folder.is_dir():
        raise _unavailable(source, folder, f"the repository has no folder {sub!r}")
    return folder


def _wanted(source: str, files: list[str], sub: str, hookpoint: str | None) -> str:
    """The repository folder to download: ``sub``, narrowed to the folder ``hookpoint``
    names when there is one."""
    prefix = f"{sub}/" if sub else ""
    if hookpoint:
        gemma_scope = re.sub(r"^layers\.(\d+)$", r"layer_\1", hookpoint)
        for name in dict.fromkeys([hookpoint.rstrip("/"), gemma_scope]):
            if any(f.startswith(f"{prefix}{name}/") for f in files):
                return f"{prefix}{name}"
    found = sorted({f.rsplit("/", 1)[0] for f in files
                    if f.startswith(prefix) and f.rsplit("/", 1)[-1] in _WEIGHT_FILES})  # fmt: skip
    if len(found) > 1:
        listing = ", ".join(f.removeprefix(prefix) for f in found[:12])
        raise HubAmbiguous(
            f"hub id {source!r} holds {len(found)} dictionaries: pass sae.hookpoint=<the folder "
            f"of one> (or append it to the id) so that only it is downloaded: {listing}"
            + (" ..." if len(found) > 12 else "")
        )
    return sub
