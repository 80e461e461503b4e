"""Triton Python-backend model: runs ``model.onnx`` (beside this file) with ONNX Runtime.

``python -m {{ cookiecutter.package_name }}.export`` copies this file into the Triton
repository as ``<name>_python/1/model.py``; it is not imported by the package. Triton's
Python backend runs it in its stub process, whose Python must import ``onnxruntime`` and
``numpy<2`` (the stub of Triton 2.51 is built against NumPy 1).

Dynamic batching hands :meth:`TritonPythonModel.execute` several requests at once: their
inputs are concatenated along the batch dimension, run as one ONNX Runtime call, and the
output is split back, one response per request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils  # only inside Triton's Python backend


class TritonPythonModel:
    """The class Triton's Python backend looks for, by this name."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        (self.input_name,) = (tensor["name"] for tensor in config["input"])
        (self.output_name,) = (tensor["name"] for tensor in config["output"])
        threads = config.get("parameters", {}).get("intra_op_num_threads", {})
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads.get("string_value", "0"))
        options.inter_op_num_threads = 1
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def execute(self, requests: list[Any]) -> list[Any]:
        inputs = [
            pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
            for request in requests
        ]
        (outputs,) = self.session.run([self.output_name], {self.input_name: np.concatenate(inputs)})
        ends = np.cumsum([len(x) for x in inputs])[:-1]
        return [
            pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output_name, part)])
            for part in np.split(outputs, ends)
        ]
