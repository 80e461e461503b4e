"""Score ``check_module_contract`` on the held-out set of ``tools/held_out_modules.py``.

Usage (torch only; one torch thread)::

    python tools/held_out.py --src /path/to/render/src [--json results.json] [-k name]
    python tools/held_out.py --template /path/to/torchwright   # renders it with copier

For each correct module: a false positive is any finding (listed). For each broken
module: caught (a finding of an expected rule), caught by another rule, or missed; and
for the caught ones, whether the advice names the line (``held_out_modules.py:N`` or the
line's text) or the attribute to change. Exceptions other than ModuleContractError are
reported as ``checker-error``: the checker itself failed.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import held_out_modules
from held_out_modules import BROKEN, CORRECT, Case

SOURCE = Path(held_out_modules.__file__).resolve()


def render(template: Path, dest: Path) -> Path:
    """Render ``template`` with copier's defaults into ``dest``; return its ``src``."""
    cmd = [
        sys.executable, "-m", "copier", "copy", "--defaults", "--quiet", "--vcs-ref", "HEAD",
        str(template), str(dest),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(
            f"copier copy {template} failed:\n{result.stdout}{result.stderr}"
        )
    return dest / "src"


def load_testing(src: Path) -> Any:
    """Import ``<package>.testing`` from a render's ``src`` folder."""
    found = sorted(src.glob("*/testing.py"))
    if len(found) != 1:
        raise SystemExit(
            f"--src {src}: expected one <package>/testing.py in it, found {len(found)}; "
            "pass the src folder of a rendered project"
        )
    sys.path.insert(0, str(src))
    return importlib.import_module(f"{found[0].parent.name}.testing")


def _statement_lines(tree: ast.Module, number: int) -> range:
    """The lines of the innermost simple statement on line ``number``, else that line."""
    around = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.stmt)
        and node.lineno <= number <= (node.end_lineno or 0)
    ]
    best = min(
        around, key=lambda node: (node.end_lineno or 0) - node.lineno, default=None
    )
    if best is None or getattr(best, "body", None):
        return range(number, number + 1)  # a decorator, or a with/if/for header
    return range(best.lineno, (best.end_lineno or number) + 1)


def expected_lines(case: Case) -> list[int]:
    """Line numbers, in held_out_modules.py, of the lines the case's advice should name.

    Each text is looked for in the module's class; if it is not there (a helper it calls),
    every line of the file that holds it counts. A statement spread over several lines
    counts as a whole: any of its lines is the line.
    """
    if not inspect.isclass(case.build) or not case.lines:
        return []
    source = SOURCE.read_text()
    text = source.splitlines()
    tree = ast.parse(source)
    lines, first = inspect.getsourcelines(case.build)
    code = [  # the lines of classes and functions, not those of the case lists
        number
        for node in tree.body
        if isinstance(node, (ast.ClassDef, ast.FunctionDef))
        for number in range(node.lineno, (node.end_lineno or node.lineno) + 1)
    ]
    numbers: list[int] = []
    for needle in case.lines:
        inside = [first + i for i, line in enumerate(lines) if needle in line]
        elsewhere = [n for n in code if needle in text[n - 1]]
        for number in inside or elsewhere:
            numbers += [n for n in _statement_lines(tree, number) if n not in numbers]
    return numbers


def names_the_place(case: Case, findings: list[dict[str, str]]) -> bool:
    """Whether a finding names one of the case's lines (by number or text) or attributes."""
    numbers = expected_lines(case)
    for finding in findings:
        text = f"{finding['where']}\n{finding['problem']}\n{finding['fix']}"
        if any(re.search(rf"{SOURCE.name}:{n}\b", text) for n in numbers):
            return True
        if any(needle in text for needle in case.lines):
            return True
        if any(
            re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", text)
            for name in case.names
        ):
            return True
    return False


def run_case(testing: Any, case: Case) -> dict[str, Any]:
    """Run the checker on one case; return its findings (or the checker's own error)."""
    torch.manual_seed(0)
    inputs = case.inputs()
    kwargs = case.kwargs() if case.kwargs else None
    module = case.build()
    options: dict[str, Any] = {"kwargs": kwargs}
    if case.factory:
        options["factory"] = case.build
    if case.init != "reset_parameters":
        options["init"] = case.init
    started = time.perf_counter()
    findings: list[dict[str, str]] = []
    error = None
    try:
        testing.check_module_contract(module, *inputs, **options)
    except testing.ModuleContractError as raised:
        findings = [violation._asdict() for violation in raised.violations]
    except Exception as raised:  # noqa: BLE001 - the checker itself failed: report it, go on
        error = "".join(traceback.format_exception_only(type(raised), raised)).strip()
        error += "\n" + "".join(traceback.format_tb(raised.__traceback__)[-2:])
    seconds = time.perf_counter() - started
    return {"name": case.name, "kind": case.kind, "findings": findings, "error": error,
            "seconds": round(seconds, 2)}  # fmt: skip


def score(case: Case, result: dict[str, Any]) -> dict[str, Any]:
    findings = result["findings"]
    rules = sorted({finding["rule"] for finding in findings})
    result["rules"] = rules
    if not case.expect:
        result["verdict"] = (
            "checker-error"
            if result["error"]
            else "false-positive"
            if findings
            else "ok"
        )
        return result
    right = [finding for finding in findings if finding["rule"] in case.expect]
    result["expect"] = list(case.expect)
    if result["error"]:
        result["verdict"] = "checker-error"
    elif right:
        result["verdict"] = "caught"
    elif findings:
        result["verdict"] = "other-rule"
    else:
        result["verdict"] = "missed"
    result["names_line"] = (
        names_the_place(case, right or findings) if findings else False
    )
    result["expected_lines"] = [f"{SOURCE.name}:{n}" for n in expected_lines(case)]
    result["extra_rules"] = sorted(set(rules) - set(case.expect)) if right else []
    return result


def one_line(finding: dict[str, str]) -> str:
    problem = " ".join(finding["problem"].split())
    return f"[{finding['rule']}] {finding['where']}: {problem[:160]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--src", type=Path, help="the src folder of a rendered project")
    where.add_argument("--template", type=Path, help="a torchwright checkout to render")
    parser.add_argument(
        "--json",
        type=Path,
        default=Path(tempfile.gettempdir()) / "held_out_results.json",
    )
    parser.add_argument(
        "-k", default="", help="run only cases whose name contains this"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="held-out-") as scratch:
        src = args.src if args.src else render(args.template, Path(scratch) / "render")
        testing = load_testing(src.resolve())
        results = {"correct": [], "broken": []}
        for group, cases in (("correct", CORRECT), ("broken", BROKEN)):
            for case in cases:
                if args.k not in case.name:
                    continue
                result = score(case, run_case(testing, case))
                results[group].append(result)
                mark = result["verdict"]
                if group == "broken" and result["verdict"] in ("caught", "other-rule"):
                    mark += (
                        ", names line" if result["names_line"] else ", line NOT named"
                    )
                print(
                    f"{group:8} {case.name:32} {result['seconds']:6.2f}s  {mark}",
                    flush=True,
                )
                for finding in result["findings"]:
                    print(f"{'':42}{one_line(finding)}")
                if result["error"]:
                    print(f"{'':42}checker error: {result['error'].splitlines()[0]}")
    correct, broken = results["correct"], results["broken"]

    def count(rows: list[dict[str, Any]], verdict: str) -> int:
        return sum(row["verdict"] == verdict for row in rows)

    summary = {
        "correct": len(correct),
        "false_positives": count(correct, "false-positive"),
        "correct_checker_errors": count(correct, "checker-error"),
        "broken": len(broken),
        "caught": count(broken, "caught"),
        "caught_names_line": sum(
            row["verdict"] == "caught" and row["names_line"] for row in broken
        ),
        "other_rule": count(broken, "other-rule"),
        "missed": count(broken, "missed"),
        "broken_checker_errors": count(broken, "checker-error"),
        "seconds": round(sum(row["seconds"] for row in correct + broken), 1),
        "torch": torch.__version__,
    }
    results["summary"] = summary
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print("\nsummary:")
    for key, value in summary.items():
        print(f"  {key}: {value}")
    print(f"results: {args.json}")


if __name__ == "__main__":
    main()
