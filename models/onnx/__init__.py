"""ONNX Runtime: the only place `onnxruntime` is imported. Sessions of exported models, and the parity gate."""

from models.onnx.parity import ParityReport, check_parity
from models.onnx.runtime import OnnxModel

__all__ = ["OnnxModel", "ParityReport", "check_parity"]
