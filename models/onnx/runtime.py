"""An ONNX Runtime session of one exported model, kept warm, predicting float32 batches.

One thread per session (`intra_op_num_threads=1, inter_op_num_threads=1`): measured here, it gives
the steadiest single-row tail; throughput comes from batching rows, not from threads.
"""

from __future__ import annotations

import numpy as np

from models.trainers.base import ONNX_INPUT

__all__ = ["OnnxModel"]


class OnnxModel:
    def __init__(self, model: bytes, output: str, column: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # shape warnings of converted classifiers are noise
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.output, self.column = output, column
        names = [o.name for o in self.session.get_outputs()]
        if output not in names:
            msg = f"the ONNX model has no output {output!r} (outputs: {', '.join(names)})"
            raise ValueError(msg)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """One prediction per row of a (rows, inputs) matrix, as float64."""
        batch = np.ascontiguousarray(x, dtype=np.float32)
        if batch.ndim == 1:
            batch = batch.reshape(1, -1)
        (out,) = self.session.run([self.output], {ONNX_INPUT: batch})
        values = np.asarray(out, dtype=np.float64)
        return values.reshape(len(batch), -1)[:, self.column]

    @staticmethod
    def version() -> str:
        import onnxruntime as ort

        return str(ort.__version__)
