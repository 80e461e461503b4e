"""The generated project's serving and compression tests, run live: a real tritonserver.

The generated ``tests/test_serve.py`` skips itself (with the reason) where the ``serve``
extra is missing, which is the case in the uv route of test_install.py: its ``dev`` extra
does not pull the 150 MB server. Here it runs in the template's own test environment,
which installs what the ``serve`` and ``compress`` extras declare (tests/requirements.txt),
with ``REQUIRE_TRITON=1``: a server that is missing, will not start, or rejects an entry
fails this test instead of skipping.
"""

from __future__ import annotations

import importlib.util
import re
import sys

import pytest
from rendering import run_in_project

pytestmark = pytest.mark.slow


def test_generated_serving_and_compression_suites_run_live(
    rendered, monkeypatch
) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("nvidia-pytriton ships tritonserver for Linux only")
    for module in ("pytriton", "tritonclient.http", "torchao"):
        if importlib.util.find_spec(module.split(".")[0]) is None:
            pytest.fail(f"{module} is missing: pip install -r tests/requirements.txt")
    project = rendered("default")
    monkeypatch.setenv("REQUIRE_TRITON", "1")
    result = run_in_project(
        project,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rs",
        "tests/test_serve.py",
        "tests/test_compress.py",
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"\b\d+ passed\b", output), output
    # Every test ran: nothing was skipped for a reason.
    assert "skipped" not in output, output
    print(output.strip().splitlines()[-1], file=sys.stderr)
