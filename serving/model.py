"""A deployed model ready to score: its bundle checked, its ONNX sessions warm, its feature groups compiled.

Everything comes from the bundle's manifest — the inputs and their transforms, the entity column
of each feature group, the partition tree with each node's serving node, the ONNX output layout —
so serving needs no spec file and no training set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models.bundle import Bundle
from models.exceptions import BundleError
from models.inputs import ModelInputs
from models.onnx import OnnxModel
from processors.definitions import FeatureGroup
from processors.engine import GroupEngine

__all__ = ["LoadedModel"]


@dataclass(frozen=True)
class GroupUse:
    """One feature group a model reads: compiled, with the request column holding its entity key."""

    group: FeatureGroup
    engine: GroupEngine
    entity_column: str
    features: tuple[str, ...]


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: int
    uri: str
    manifest: Mapping[str, Any]
    inputs: ModelInputs
    groups: tuple[GroupUse, ...]
    time_field: str
    levels: tuple[str, ...]
    serves: Mapping[str, str]  # node id -> the node whose model serves it
    sessions: Mapping[str, OnnxModel]  # serving node id -> its ONNX model

    @classmethod
    def from_bundle(cls, bundle: Bundle, groups: Mapping[str, FeatureGroup]) -> LoadedModel:
        """`groups[name]` must be the exact group version the model was trained with (fingerprints checked)."""
        manifest = bundle.manifest
        try:
            inputs = ModelInputs.from_json(manifest["inputs"])
            uses = []
            for name, recorded in sorted(manifest["feature_groups"].items()):
                group = groups.get(name)
                if group is None or group.version != recorded["version"]:
                    ref = f"{name}:v{recorded['version']}"
                    msg = f"bundle {bundle.uri}: needs feature group {ref}, which is not available"
                    raise BundleError(msg)
                if group.fingerprint() != recorded["fingerprint"]:
                    msg = f"bundle {bundle.uri}: {group.ref} differs from the definition the model was trained with"
                    raise BundleError(msg)
                features = tuple(s.feature for s in inputs.stored if s.group == name)
                uses.append(GroupUse(group, GroupEngine(group), manifest["entities"][name], features))
            layout = manifest["onnx"]
            nodes = manifest["partitions"]["nodes"]
            serves = {n["id"]: n["serves"] for n in nodes}
            sessions = {
                n["id"]: OnnxModel(bundle.files[n["file"]], layout["output"], int(layout["column"]))
                for n in nodes
                if n["serves"] == n["id"]
            }
            missing = sorted({s for s in serves.values() if s not in sessions})
            if missing:
                msg = f"bundle {bundle.uri}: nodes are served by {', '.join(missing)}, which has no ONNX file"
                raise BundleError(msg)
            return cls(
                name=str(manifest["model"]), version=int(manifest["version"]), uri=bundle.uri, manifest=manifest,
                inputs=inputs, groups=tuple(uses), time_field=str(manifest["training_set"]["time_field"]),
                levels=tuple(manifest["partitions"]["by"]), serves=serves, sessions=sessions,
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"bundle {bundle.uri}: the manifest is not one this version of affresco can serve ({exc!r})"
            raise BundleError(msg) from None

    @property
    def request_fields(self) -> dict[str, str]:
        """Every field a request row must or may carry, with its type: request fields, entity and partition columns."""
        return {name: t.kind.value for name, t in self.inputs.request.items()}
