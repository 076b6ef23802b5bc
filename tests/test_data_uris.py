"""From URIs to local paths: pvc:// claims, file://, and remote folders fetched once into a cache."""

from __future__ import annotations

import sys
from pathlib import Path

import fsspec
import pytest

from sailvl.data import uris
from sailvl.data.uris import UriError, local_folder, resolve_uri


@pytest.mark.parametrize(
    ("uri", "pvc_root", "expected"),
    [
        ("pvc://ckpt/stage/final", None, "/mnt/pvc/ckpt/stage/final"),
        ("pvc://ckpt", None, "/mnt/pvc/ckpt"),
        ("pvc://ckpt/a/b", "/tmp/claims", "/tmp/claims/ckpt/a/b"),
        ("pvc://data.v2/x", {"data.v2": "/srv/data"}, "/srv/data/x"),
        ("file:///abs/path", None, "/abs/path"),
        ("relative/path", None, "relative/path"),
    ],
)
def test_resolve_uri_maps_local_uris(uri: str, pvc_root: object, expected: str) -> None:
    assert resolve_uri(uri, pvc_root) == Path(expected)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("uri", "pvc_root", "message"),
    [
        (
            "pvc://other/x",
            {"ckpt": "/srv"},
            "no folder is given for claim 'other' of 'pvc://other/x'; claims mapped: ckpt",
        ),
        ("s3://bucket/x", None, "is not on this machine"),
        ("pvc://ckpt/../etc", None, "'..' is not allowed"),
        ("ftp://host/x", None, "unknown URI scheme"),
    ],
)
def test_resolve_uri_refuses_what_it_cannot_map(uri: str, pvc_root: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_uri(uri, pvc_root)  # type: ignore[arg-type]


def test_local_folder_accepts_local_folders_only_when_they_exist(tmp_path: Path) -> None:
    (tmp_path / "claim" / "model").mkdir(parents=True)
    (tmp_path / "file.txt").write_text("x")
    assert local_folder("pvc://claim/model", tmp_path) == tmp_path / "claim" / "model"
    assert local_folder(f"file://{tmp_path}") == tmp_path
    with pytest.raises(UriError, match=r"must name a folder; .*file.txt is a file"):
        local_folder(str(tmp_path / "file.txt"))
    with pytest.raises(UriError, match="does not exist"):
        local_folder("pvc://claim/missing", tmp_path)
    with pytest.raises(UriError, match="does not name a folder"):
        local_folder("synthetic://shapes?n=3")


@pytest.mark.parametrize(("uri", "package"), [("s3://bucket/model", "s3fs"), ("gs://bucket/model", "gcsfs")])
def test_remote_folders_need_their_storage_package(
    uri: str, package: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # as if not installed
    with pytest.raises(UriError, match=f"needs the {package} package, which is not installed .*sailvl\\[storage\\]"):
        local_folder(uri, cache_dir=tmp_path)


def test_remote_folders_are_fetched_once_into_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    memory = fsspec.filesystem("memory")
    memory.pipe({"/bucket/model/config.json": b"{}", "/bucket/model/sub/weights.bin": b"w"})
    fetches: list[str] = []

    def url_to_fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
        fetches.append(url)
        return memory, url.replace("s3://", "/")

    monkeypatch.setattr(uris, "_require", lambda scheme, uri: None)
    monkeypatch.setattr(fsspec.core, "url_to_fs", url_to_fs)
    folder = local_folder("s3://bucket/model", cache_dir=tmp_path)
    assert folder == tmp_path / "s3" / "bucket" / "model"
    assert (folder / "config.json").read_bytes() == b"{}" and (folder / "sub" / "weights.bin").read_bytes() == b"w"
    assert local_folder("s3://bucket/model", cache_dir=tmp_path) == folder
    assert fetches == ["s3://bucket/model"]  # the second call reused the complete copy
    assert sorted(p.name for p in folder.parent.iterdir()) == ["model"]  # no partial copies left

    with pytest.raises(UriError, match="must name a folder; found a file there"):
        local_folder("s3://bucket/model/config.json", cache_dir=tmp_path / "other")
    memory.rm("/bucket", recursive=True)


def test_hugging_face_folders_come_from_a_snapshot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub

    calls: list[dict[str, object]] = []

    def snapshot_download(*, repo_id: str, local_dir: Path, allow_patterns: list[str] | None) -> str:
        calls.append({"repo_id": repo_id, "allow_patterns": allow_patterns})
        for name in ("config.json", "stage-a/final/config.json", "stage-a/final/model.safetensors"):
            (Path(local_dir) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(local_dir) / name).write_text(name)
        (Path(local_dir) / ".cache").mkdir()
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    folder = local_folder("hf://org/repo/stage-a/final", cache_dir=tmp_path)
    assert calls == [{"repo_id": "org/repo", "allow_patterns": ["stage-a/final/**"]}]
    assert sorted(p.name for p in folder.iterdir()) == [".sailvl-complete", "config.json", "model.safetensors"]
    whole = local_folder("hf://org/repo", cache_dir=tmp_path / "whole")
    assert (whole / "stage-a" / "final" / "config.json").is_file() and not (whole / ".cache").exists()
    with pytest.raises(UriError, match="repository org/repo has no folder 'nothing'"):
        local_folder("hf://org/repo/nothing", cache_dir=tmp_path / "none")
