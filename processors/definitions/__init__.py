"""Feature-group definitions: YAML in, validated and compiled groups out."""

from processors.definitions.group import Feature, FeatureGroup
from processors.definitions.spec import FeatureGroupSpec, FeatureSpec, SourceSpec
from processors.definitions.validate import compile_spec, load_groups, yaml_files

__all__ = [
    "Feature",
    "FeatureGroup",
    "FeatureGroupSpec",
    "FeatureSpec",
    "SourceSpec",
    "compile_spec",
    "load_groups",
    "yaml_files",
]
