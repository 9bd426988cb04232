"""Model bundles: a directory of ONNX files and a `manifest.json`, addressed by a URI, no pickles.

A bundle is written once and never changed. `manifest.json` lists every other file with its
sha256; the registry event carries the sha256 of every file, the manifest's included. Reading a
bundle checks every file before anything uses it, so a bundle changed by one byte is refused with
the file and both checksums.

URIs are what `pyarrow.fs` understands: a local path (made absolute), `file://`, `s3://`,
`gs://`, `hdfs://`. Serving replicas on other machines fetch the same URI.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.exceptions import BundleError

__all__ = ["MANIFEST", "Bundle", "BundleRef", "bundle_exists", "check_file_name", "load_bundle", "read_manifest",
           "sha256_hex", "write_bundle"]  # fmt: skip

MANIFEST = "manifest.json"


_NAME = re.compile(r"^[A-Za-z0-9_%+-][A-Za-z0-9._%+-]*(/[A-Za-z0-9_%+-][A-Za-z0-9._%+-]*)*$")


def check_file_name(name: str, uri: str) -> None:
    """A bundle's file names are relative paths inside it: no `..`, no absolute path, no backslash."""
    if not isinstance(name, str) or len(name) > 255 or not _NAME.match(name):
        msg = f"bundle {uri}: {name!r} is not a file name inside a bundle (relative, no '..', no leading '.' or '/')"
        raise BundleError(msg)


def bundle_exists(uri: str) -> bool:
    from pyarrow import fs

    filesystem, path = _filesystem(uri)
    return bool(filesystem.get_file_info(f"{path}/{MANIFEST}").type != fs.FileType.NotFound)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class BundleRef:
    """Where a bundle was written and the sha256 of each of its files (manifest included)."""

    uri: str
    sha256: dict[str, str]


@dataclass(frozen=True)
class Bundle:
    """A bundle whose every file matched its checksum."""

    uri: str
    manifest: dict[str, Any]
    files: dict[str, bytes]


def _filesystem(uri: str) -> tuple[Any, str]:
    from pyarrow import fs

    if "://" not in uri:
        uri = str(Path(uri).absolute())
    try:
        return fs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as exc:
        msg = f"bundle URI {uri!r}: {exc}"
        raise BundleError(msg) from None


def _read(filesystem: Any, path: str, uri: str, name: str) -> bytes:
    try:
        with filesystem.open_input_stream(f"{path}/{name}") as stream:
            return bytes(stream.read())
    except (FileNotFoundError, OSError) as exc:
        msg = f"bundle {uri}: cannot read {name}: {exc}"
        raise BundleError(msg) from None


def write_bundle(uri: str, files: Mapping[str, bytes], manifest: dict[str, Any]) -> BundleRef:
    """Write `files` and a manifest listing their checksums under `uri`; refuse to overwrite a bundle."""
    if MANIFEST in files:
        msg = f"{MANIFEST} is written by write_bundle, not passed as a file"
        raise BundleError(msg)
    for name in files:
        check_file_name(name, uri)
    filesystem, path = _filesystem(uri)
    if bundle_exists(uri):
        msg = f"bundle {uri} already exists; bundles are immutable (register a new version instead)"
        raise BundleError(msg)
    checksums = {name: sha256_hex(data) for name, data in sorted(files.items())}
    body = json.dumps({**manifest, "files": checksums}, indent=2, sort_keys=True).encode()
    filesystem.create_dir(path, recursive=True)
    for name, data in files.items():
        parent = f"{path}/{name}".rsplit("/", 1)[0]
        filesystem.create_dir(parent, recursive=True)
        with filesystem.open_output_stream(f"{path}/{name}") as stream:
            stream.write(data)
    # The manifest last: a bundle without one is an interrupted write, never a readable bundle.
    with filesystem.open_output_stream(f"{path}/{MANIFEST}") as stream:
        stream.write(body)
    resolved = uri if "://" in uri else str(Path(uri).absolute())
    return BundleRef(resolved, {**checksums, MANIFEST: sha256_hex(body)})


def _check(uri: str, name: str, data: bytes, expected: str, source: str) -> None:
    actual = sha256_hex(data)
    if actual != expected:
        msg = f"bundle {uri}: {name} has sha256 {actual}, expected {expected} ({source}); refusing to load it"
        raise BundleError(msg)


def read_manifest(uri: str, expected: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The manifest, checked against `expected` (the registry event's checksums) when given."""
    filesystem, path = _filesystem(uri)
    body = _read(filesystem, path, uri, MANIFEST)
    if expected is not None:
        if MANIFEST not in expected:
            msg = f"bundle {uri}: the registry lists no checksum for {MANIFEST}"
            raise BundleError(msg)
        _check(uri, MANIFEST, body, expected[MANIFEST], "from the registry")
    try:
        manifest = json.loads(body)
    except ValueError as exc:
        msg = f"bundle {uri}: {MANIFEST} is not JSON: {exc}"
        raise BundleError(msg) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        msg = f"bundle {uri}: {MANIFEST} has no 'files' mapping"
        raise BundleError(msg)
    for name, checksum in manifest["files"].items():
        check_file_name(name, uri)
        if not isinstance(checksum, str):
            msg = f"bundle {uri}: {MANIFEST} lists {name} with checksum {checksum!r}, not a sha256"
            raise BundleError(msg)
    return manifest


def load_bundle(uri: str, expected: Mapping[str, str] | None = None) -> Bundle:
    """Every file of the bundle, each checked against the manifest and against `expected`.

    `expected` is the registry event's checksums: what makes a bundle trustworthy (a manifest only
    vouches for itself). Serving always passes them; None is for inspecting a bundle by hand.
    """
    manifest = read_manifest(uri, expected)
    filesystem, path = _filesystem(uri)
    files: dict[str, bytes] = {}
    listed: dict[str, str] = manifest["files"]
    if expected is not None:
        unlisted = sorted(set(expected) - set(listed) - {MANIFEST})
        if unlisted:
            msg = f"bundle {uri}: the registry lists {', '.join(unlisted)}, which the manifest does not"
            raise BundleError(msg)
    for name, checksum in sorted(listed.items()):
        data = _read(filesystem, path, uri, name)
        _check(uri, name, data, checksum, f"from {MANIFEST}")
        if expected is not None and name in expected:
            _check(uri, name, data, expected[name], "from the registry")
        files[name] = data
    return Bundle(uri, manifest, files)
