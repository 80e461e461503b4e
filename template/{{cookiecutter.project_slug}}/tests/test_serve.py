"""The exported Triton repository, loaded and served by a real Triton Inference Server.

The server is the ``tritonserver`` (2.51, Python backend) of the ``nvidia-pytriton`` wheel,
installed by ``uv run nox -s serve`` in an environment of its own (noxfile.py: SERVE). It
starts on loopback ports of its own, loads the Python-backend entries explicitly (this build
has no ONNX Runtime or PyTorch backend), and answers over HTTP and gRPC. Elsewhere these
tests are skipped with the reason, except with ``REQUIRE_TRITON=1`` (the ``serve``
session's default), where a missing server is a failure.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch

from {{ cookiecutter.package_name }} import export, serve
from {{ cookiecutter.package_name }}.model import Model

pytestmark = pytest.mark.slow  # a server start and an ONNX export: several seconds


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def _missing() -> str | None:
    """Why the server cannot run here, or None."""
    for module in ("pytriton", "tritonclient.http", "tritonclient.grpc", "onnx", "onnxruntime"):
        if not _installed(module):
            return f"{module} is not installed: the serving tests run in `uv run nox -s serve`"
    import numpy as np  # noqa: PLC0415

    if int(np.__version__.split(".")[0]) >= 2:
        return (
            f"numpy {np.__version__}: Triton 2.51's Python backend stub needs numpy<2 "
            "(`uv run nox -s serve` runs them in an environment of their own)"
        )
    return None


@pytest.fixture(scope="module", autouse=True)
def _needs_server() -> None:
    reason = _missing()
    if reason is None:
        return
    if os.environ.get("REQUIRE_TRITON") == "1":
        pytest.fail(f"REQUIRE_TRITON=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def model() -> Model:
    return export.load_model()


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``export --format triton`` plus an entry of an ONNX Runtime int8 model (dynamic
    quantization), which differs from eager PyTorch and is served all the same."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415

    out = tmp_path_factory.mktemp("exported")
    assert export.main(["--format", "triton", "--name", "classifier", "--out", str(out)]) == 0
    repository = out / "triton"
    int8 = out / "model.int8.onnx"
    float32 = repository / "classifier" / "1" / "model.onnx"
    quantize_dynamic(float32, int8, weight_type=QuantType.QInt8, per_channel=True)
    export.write_triton_onnx(repository, name="classifier_int8", onnx_path=int8)
    return repository


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[serve.TritonServer]:
    models = serve.python_models(repository)
    assert models == ["classifier_int8_python", "classifier_python"]
    with serve.TritonServer(repository, models, timeout=120) as running:
        yield running
    assert running.process is not None
    assert running.process.poll() is not None  # stopped by its pid


def _eager(model: Model, x: Any) -> Any:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _http_infer(url: str, name: str, x: Any) -> Any:
    from tritonclient import http  # noqa: PLC0415

    client = http.InferenceServerClient(url)
    request = http.InferInput(export.INPUT_NAME, list(x.shape), "FP32")
    request.set_data_from_numpy(x)
    return client.infer(name, [request]).as_numpy(export.OUTPUT_NAME)


def _grpc_infer(url: str, name: str, x: Any) -> Any:
    from tritonclient import grpc  # noqa: PLC0415

    client = grpc.InferenceServerClient(url)
    request = grpc.InferInput(export.INPUT_NAME, list(x.shape), "FP32")
    request.set_data_from_numpy(x)
    return client.infer(name, [request]).as_numpy(export.OUTPUT_NAME)


def _batch(size: int, seed: int) -> Any:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(size, 16, generator=generator).numpy()


def test_every_python_entry_is_ready_with_the_exported_config(
    server: serve.TritonServer, model: Model
) -> None:
    from tritonclient import http  # noqa: PLC0415

    client = http.InferenceServerClient(server.http_url)
    assert client.is_server_ready()
    for name in server.models:
        assert client.is_model_ready(name)
        config = client.get_model_config(name)
        assert config["backend"] == "python"
        assert config["max_batch_size"] == 64
        assert "dynamic_batching" in config
        (tensor,) = config["input"]
        assert (tensor["name"], tensor["dims"]) == (export.INPUT_NAME, [model.config.in_features])
        (tensor,) = config["output"]
        assert (tensor["name"], tensor["dims"]) == (export.OUTPUT_NAME, [model.config.num_classes])


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("batch", [1, 7])
def test_answers_match_eager_pytorch(
    server: serve.TritonServer, model: Model, protocol: str, batch: int
) -> None:
    x = _batch(batch, seed=batch)
    if protocol == "http":
        actual = _http_infer(server.http_url, "classifier_python", x)
    else:
        actual = _grpc_infer(server.grpc_url, "classifier_python", x)
    assert actual.shape == (batch, model.config.num_classes)
    torch.testing.assert_close(
        torch.tensor(actual),
        torch.from_numpy(_eager(model, x)),
        atol=export.ATOL,
        rtol=export.RTOL,
    )


def test_concurrent_clients_each_get_their_own_rows(
    server: serve.TritonServer, model: Model
) -> None:
    """Eight clients at once, batches of 1 to 7: dynamic batching merges the requests
    into one model call and must hand every client back exactly its rows."""
    batches = [_batch(1 + i % 7, seed=100 + i) for i in range(16)]

    def infer(i: int) -> Any:
        if i % 2:
            return _grpc_infer(server.grpc_url, "classifier_python", batches[i])
        return _http_infer(server.http_url, "classifier_python", batches[i])

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(infer, range(len(batches))))
    for x, actual in zip(batches, answers, strict=True):
        torch.testing.assert_close(
            torch.tensor(actual),
            torch.from_numpy(_eager(model, x)),
            atol=export.ATOL,
            rtol=export.RTOL,
        )


def test_int8_entry_serves_what_onnx_runtime_computes(
    server: serve.TritonServer, repository: Path
) -> None:
    import onnxruntime as ort  # noqa: PLC0415

    x = _batch(7, seed=7)
    path = repository / "classifier_int8_python" / "1" / "model.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {export.INPUT_NAME: x})
    actual = _http_infer(server.http_url, "classifier_int8_python", x)
    torch.testing.assert_close(torch.tensor(actual), torch.tensor(expected))


def test_a_rejected_entry_is_an_error_naming_it(repository: Path) -> None:
    # This build has no ONNX Runtime backend: loading the onnxruntime entry must fail,
    # and the error must say which model and why, in one line.
    with pytest.raises(serve.ServeError) as error:
        serve.TritonServer(repository, ["classifier"], timeout=60).start()
    message = str(error.value)
    assert "\n" not in message
    assert "rejected classifier" in message
    assert "failed to load 'classifier'" in message
    assert "onnxruntime" in message
