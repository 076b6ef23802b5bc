"""From sailvl URIs to local paths: pvc:// claims mapped to folders, remote checkpoints fetched into a cache.

`resolve_uri` maps the URIs that already live on this machine (`pvc://`, `file://`, a plain path) to a path, and
never touches the filesystem. In a pod the operator mounts each claim at `/mnt/pvc/<claim>`; the local runner
maps claims to folders under its `--pvc-root`, or names one folder per claim.

`local_folder` is for what must be a folder on local disk, such as a checkpoint transformers loads: local URIs
resolve as above; `s3://`, `gs://` (through fsspec with s3fs / gcsfs) and `hf://org/repo[/path]` (a Hugging Face
model repository, through huggingface_hub) are copied once into a cache folder and reused from there.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from sailvl.api.uris import check_uri, scheme_of

PVC_MOUNT_ROOT = Path("/mnt/pvc")  # where the operator mounts claims in every pod it creates
CACHE_ENV = "SAILVL_CACHE"
_COMPLETE = ".sailvl-complete"  # written last: a cached folder without it is a partial copy
_STORAGE_PACKAGES = {"s3": "s3fs", "gs": "gcsfs", "hf": "huggingface_hub"}

PvcRoot = str | Path | Mapping[str, str | Path] | None


class UriError(ValueError):
    """A URI that cannot be turned into a local path here."""


def resolve_uri(uri: str, pvc_root: PvcRoot = None) -> Path:
    """The local path of a `pvc://`, `file://` or plain-path URI; nothing is read or created.

    `pvc_root` maps claims to folders: a folder holding one subfolder per claim (default `/mnt/pvc`, where the
    operator mounts them), or a mapping from claim name to its folder.
    """
    check_uri(uri)
    scheme = scheme_of(uri)
    if scheme == "file":
        return Path(uri.removeprefix("file://")) if uri.startswith("file://") else Path(uri)
    if scheme != "pvc":
        raise UriError(f"{uri!r} is not on this machine: expected pvc://, file:// or a plain path (see local_folder)")
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    if isinstance(pvc_root, Mapping):
        if claim not in pvc_root:
            raise UriError(
                f"no folder is given for claim {claim!r} of {uri!r}; claims mapped: {', '.join(sorted(pvc_root))}"
            )
        base = Path(pvc_root[claim])
    else:
        base = Path(pvc_root if pvc_root is not None else PVC_MOUNT_ROOT) / claim
    return base / path if path else base


def local_folder(uri: str, pvc_root: PvcRoot = None, cache_dir: str | Path | None = None) -> Path:
    """A local folder holding what `uri` names, fetching `s3://`, `gs://` and `hf://` folders into a cache first.

    The cache is `cache_dir`, else `$SAILVL_CACHE`, else `~/.cache/sailvl`; a folder is fetched once, into a
    temporary name renamed when complete, and reused afterwards.
    """
    scheme = scheme_of(check_uri(uri))
    if scheme in ("file", "pvc"):
        folder = resolve_uri(uri, pvc_root)
        if not folder.is_dir():
            raise UriError(
                f"{uri!r} must name a folder; {folder} {'is a file' if folder.exists() else 'does not exist'}"
            )
        return folder
    if scheme not in _STORAGE_PACKAGES:
        raise UriError(f"{uri!r} does not name a folder: expected s3://, gs://, hf://, pvc://, file:// or a path")
    _require(scheme, uri)
    root = Path(cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "sailvl")
    target = root / scheme / uri.split("://", 1)[1].strip("/")
    if (target / _COMPLETE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        fetched = _fetch(uri, scheme, partial)
        (fetched / _COMPLETE).touch()
        if (target / _COMPLETE).exists():  # another process finished the same copy meanwhile
            return target
        if target.exists():  # a copy that never completed (no marker) under the final name
            shutil.rmtree(target)
        fetched.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def _require(scheme: str, uri: str) -> None:
    package = _STORAGE_PACKAGES[scheme]
    try:
        importlib.import_module(package)
    except ImportError:
        raise UriError(
            f"reading {uri!r} needs the {package} package, which is not installed "
            f"(pip install {package}, or the sailvl[storage] extra)"
        ) from None


def _fetch(uri: str, scheme: str, into: Path) -> Path:
    """Copy the folder `uri` names below `into`; return the local folder holding its contents."""
    if scheme == "hf":
        from huggingface_hub import snapshot_download

        org, repo, *rest = uri.removeprefix("hf://").strip("/").split("/")
        subfolder = "/".join(rest)
        snapshot_download(
            repo_id=f"{org}/{repo}",
            local_dir=into / "snapshot",
            allow_patterns=[f"{subfolder}/**"] if subfolder else None,
        )
        fetched = into / "snapshot" / subfolder if subfolder else into / "snapshot"
        if not fetched.is_dir():
            raise UriError(f"{uri!r} must name a folder; repository {org}/{repo} has no folder {subfolder!r}")
        shutil.rmtree(fetched / ".cache", ignore_errors=True)  # huggingface_hub's download bookkeeping
        return fetched
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    if not fs.isdir(path):
        raise UriError(f"{uri!r} must name a folder; found {'a file' if fs.exists(path) else 'nothing'} there")
    fs.get(path.rstrip("/") + "/", str(into / "folder") + "/", recursive=True)
    return into / "folder"
