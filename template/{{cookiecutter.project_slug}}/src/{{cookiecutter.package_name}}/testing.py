"""``check_module_contract``: the nn.Module contract as one assertion for your tests.

Call it on every layer you write, with example inputs::

    from {{ cookiecutter.package_name }}.testing import check_module_contract

    def test_my_layer_keeps_the_contract() -> None:
        check_module_contract(
            MyLayer(16, 32),
            torch.randn(8, 16),
            factory=lambda **factory_kwargs: MyLayer(16, 32, **factory_kwargs),
        )

It raises :class:`ModuleContractError`, an ``AssertionError``, whose message lists every
rule broken, each with the attribute, parameter or line involved and the fix; a module
that crashes is reported the same way (rule ``crash``). The rules (the names that
``skip=`` takes, each with its reason) are in :data:`RULES`. The example inputs must suit
training mode too (more than one sample for batch norm). The module under test is never
changed: every probe runs on a deep copy, and the global random state is restored.

How the rules that cannot be seen by looking at the module are found:

* fixed device: a copy moved to the ``meta`` device runs the inputs moved there, so a
  tensor made on the CPU shows up on a CPU-only machine;
* fixed dtype: a copy converted to float64 must compute and return float64;
* both watch the torch calls made by your code (``torch.overrides.TorchFunctionMode``)
  to report the line that made the offending tensor.

This module is for tests only: nothing in the package imports it.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import io
import itertools
import math
import sys
import sysconfig
import traceback
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

__all__ = ["RULES", "ModuleContractError", "Violation", "check_module_contract"]

RULES: dict[str, str] = {
    "state-in-forward": "forward() creates no parameter or buffer, on self or as a local",
    "plain-container": "submodules and parameters are not held in plain lists, tuples or dicts",
    "unregistered-tensor": "every tensor attribute is a registered parameter or buffer",
    "fixed-device": "forward() creates no tensor on a fixed device",
    "fixed-dtype": "the module converted to float64 computes and returns float64",
    "unused-parameter": "every trainable parameter receives a gradient",
    "follows-to": ".to() moves and casts every parameter and buffer",
    "state-dict": "state_dict() round-trips, without non-persistent buffers",
    "growing-state": "forward() does not accumulate state across calls",
    "eval-inference": "eval-mode inference is deterministic and builds no autograd graph",
    "meta-init": "meta construction, to_empty() and reset_parameters() give finite state",
}

_FIXES: dict[str, str] = {
    "crash": "make the module run on the example inputs; the rules need a forward pass",
    "state-in-forward": "create it once in __init__ (nn.Parameter or register_buffer); "
    "forward() only computes",
    "plain-container": "use nn.ModuleList / nn.ModuleDict / nn.ParameterList / "
    "nn.ParameterDict, so parameters(), .to() and state_dict() see it",
    "unregistered-tensor": "register it: nn.Parameter if trained, else register_buffer(); "
    "plain attributes are not moved by .to() nor saved",
    "fixed-device": "derive the device from the inputs or the parameters (device=x.device, "
    "torch.zeros_like, x.new_zeros), or make it a buffer",
    "fixed-dtype": "derive the dtype from the inputs or the parameters (dtype=x.dtype, "
    "torch.zeros_like, x.new_zeros)",
    "unused-parameter": "use it in forward(), delete it, or freeze it with "
    "requires_grad_(False); DistributedDataParallel fails on it "
    '("Expected to have finished reduction in the prior iteration")',
    "follows-to": "keep state in parameters and buffers and leave Module._apply alone",
    "state-dict": "save trained state: a persistent buffer (register_buffer(..., "
    "persistent=True)) or a parameter; non-persistent buffers must be recomputed by "
    "reset_parameters()",
    "growing-state": "do not keep tensors across calls; return them, or log a detached "
    "copy outside the module",
    "eval-inference": "gate randomness on self.training (F.dropout(x, p, self.training)), "
    "leave buffers alone in eval mode, and never re-enable autograd inside forward()",
    "meta-init": "pass device=/dtype= to every tensor made in __init__ and fill them all in "
    "reset_parameters() (non-persistent buffers included)",
}

# nn.Module's own bookkeeping: every attribute an empty nn.Module has.
_MODULE_INTERNALS = frozenset(vars(nn.Module()))
_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_CONTAINERS = (list, tuple, dict, set, frozenset, collections.deque)
_SIZED = (Tensor, *_CONTAINERS)
_TORCH_DIR = str(Path(torch.__file__).parent)
_STDLIB_DIR = sysconfig.get_paths()["stdlib"]
_SITE_DIRS = (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])
# Rules whose findings explain a crash of the float64 copy.
_STRUCTURAL = frozenset({"plain-container", "unregistered-tensor", "follows-to"})


class Violation(NamedTuple):
    """One broken rule: which rule, where (attribute, parameter or line), what, the fix."""

    rule: str
    where: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.where}: {self.problem}\n    fix: {self.fix}"


class ModuleContractError(AssertionError):
    """Raised by :func:`check_module_contract`; ``violations`` holds every rule broken."""

    def __init__(
        self,
        module_name: str,
        violations: list[Violation],
        skipped: Mapping[str, str] | None = None,
    ) -> None:
        self.violations = violations
        lines = [f"{module_name} breaks the nn.Module contract ({len(violations)} found):"]
        lines += [f"- {violation}" for violation in violations]
        lines += [f"(rule {rule} skipped: {reason})" for rule, reason in (skipped or {}).items()]
        super().__init__("\n".join(lines))

    @property
    def rules(self) -> set[str]:
        """The names of the rules broken."""
        return {violation.rule for violation in self.violations}


def check_module_contract(
    module: nn.Module,
    /,
    *example_inputs: Any,
    skip: Mapping[str, str] | None = None,
    factory: Callable[..., nn.Module] | None = None,
    loss: Callable[[Any], Tensor] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
) -> None:
    """Check ``module`` against every rule of :data:`RULES`; raise if any is broken.

    Args:
        module: the module under test; it is not changed.
        example_inputs: positional inputs of ``module.forward`` (tensors, possibly nested in
            tuples, lists or dicts; integer inputs are never cast).
        skip: rules to switch off, each mapped to the reason why, e.g.
            ``{"fixed-device": "calls torch.nonzero, which meta tensors cannot run"}``.
        factory: builds a fresh module when called as ``factory(device=...)``; turns on
            the ``meta-init`` rule.
        loss: maps the output to the scalar whose backward pass must reach every trainable
            parameter. Default: the sum of every floating-point output.
        rtol: relative tolerance of output comparisons (default: torch.testing's).
        atol: absolute tolerance of output comparisons (default: torch.testing's).

    Raises:
        ModuleContractError: one or more rules broken, or the module crashed.
        ValueError: ``skip`` names an unknown rule or gives no reason.
    """
    skip = dict(skip or {})
    for rule, reason in skip.items():
        if rule not in RULES:
            raise ValueError(f"skip: unknown rule {rule!r}; the rules are {', '.join(RULES)}")
        if not str(reason or "").strip():
            raise ValueError(f"skip: give the reason why rule {rule!r} is switched off")
    if (rtol is None) != (atol is None):
        raise ValueError("give both rtol and atol, or neither")
    checker = _Checker(module, example_inputs, factory, loss or _sum_of_outputs, rtol, atol)
    # The random state is restored afterwards: CPU, and the GPUs if CUDA is in use.
    with torch.random.fork_rng(devices=_cuda_devices()):
        violations = checker.run(skip)
    if violations:
        raise ModuleContractError(type(module).__name__, violations, skip)


class _Crash(Exception):
    """The module could not run at all: no other rule can be checked."""


class _Checker:
    def __init__(
        self,
        module: nn.Module,
        inputs: tuple[Any, ...],
        factory: Callable[..., nn.Module] | None,
        loss: Callable[[Any], Tensor],
        rtol: float | None,
        atol: float | None,
    ) -> None:
        self.module = module
        self.inputs = inputs
        self.factory = factory
        self.loss = loss
        self.rtol = rtol
        self.atol = atol
        self.violations: list[Violation] = []
        self.skip: Mapping[str, str] = {}

    # -- the driver -------------------------------------------------------------------

    def run(self, skip: Mapping[str, str]) -> list[Violation]:
        self.skip = skip
        try:
            self.base = self.copy_of(self.module)
            # nn.Lazy* modules create their parameters on the first call, by design.
            lazy = any(isinstance(p, nn.UninitializedParameter) for p in self.base.parameters())
            self.first_call(self.base if lazy else self.copy_of(self.base))
        except _Crash:
            return self.violations
        probes: list[tuple[tuple[str, ...], Callable[[], None]]] = [
            (("state-in-forward", "unused-parameter", "growing-state"), self.train_calls),
            (("plain-container", "unregistered-tensor"), self.registration),
            (("fixed-device", "follows-to"), self.fixed_device),
            (("fixed-dtype", "follows-to"), self.fixed_dtype),
            (("state-dict",), self.state_dict_round_trip),
            (("eval-inference",), self.eval_inference),
            (("meta-init",), self.meta_init),
        ]
        for rules, probe in probes:
            if all(rule in skip for rule in rules):
                continue
            try:
                probe()
            except _Crash:
                break
            # A crash while probing is a finding, not a bug of the checker.
            except Exception as error:  # noqa: BLE001
                self.add(rules[0], _where(error), _describe(error))
        return self.violations

    def add(self, rule: str, where: str, problem: str) -> None:
        if rule not in self.skip or rule == "crash":
            self.violations.append(Violation(rule, where, problem, _FIXES[rule]))

    def copy_of(self, module: nn.Module) -> nn.Module:
        try:
            return copy.deepcopy(module)
        except Exception as error:
            self.add("crash", type(module).__name__, f"copy.deepcopy failed: {error}")
            raise _Crash from error

    def call(self, module: nn.Module, inputs: tuple[Any, ...] | None = None) -> Any:
        # Fresh copies every call: a forward() that changes its inputs cannot change the
        # next call's (clone() keeps the autograd link to an input that requires grad).
        inputs = self.inputs if inputs is None else inputs
        return module(*_map_tensors(torch.clone, inputs))

    def first_call(self, module: nn.Module) -> Any:
        """Run forward once; if the module cannot run at all, no rule can be checked."""
        try:
            return self.call(module)
        except Exception as error:
            self.add("crash", _where(error), f"forward() raised {_describe(error)}")
            raise _Crash from error

    # -- rules 1, 6, 9: three training-mode calls ------------------------------------------

    def train_calls(self) -> None:
        module = self.copy_of(self.base).train()
        before = _registry(module)
        local_names = _LocalNames()
        with local_names:
            output = self.call(module)
        after_first = _registry(module)
        appeared = sorted(after_first.keys() - before.keys())
        for name in appeared:
            owner = name.split("'")[1].rpartition(".")[0]
            if f"submodule '{owner}'" not in appeared:
                self.add("state-in-forward", name, "appeared during forward()")
        self.check_graph_leaves(module, output, local_names)
        try:
            self.check_gradients(module, output)
        # The loss or the backward pass crashed.
        except Exception as error:  # noqa: BLE001
            self.add("unused-parameter", _where(error), f"backward raised {_describe(error)}")
        del output
        footprints = []
        for _ in range(2):
            self.call(module)
            footprints.append(_footprint(module))
        after_third = _registry(module)
        for name, identity in after_first.items():
            if name.startswith("parameter") and after_third.get(name, identity) != identity:
                self.add("state-in-forward", name, "is a new tensor after every forward()")
        for name, size in footprints[1].items():
            if size > footprints[0].get(name, 0):
                self.add(
                    "growing-state",
                    name,
                    f"grows with every forward() call ({footprints[0].get(name, 0)} -> {size} "
                    "elements between the 2nd and 3rd call with the same inputs)",
                )

    def check_graph_leaves(self, module: nn.Module, output: Any, names: _LocalNames) -> None:
        """A leaf that requires grad and reaches the output must be a registered parameter."""
        # Unregistered attributes are reported by rule unregistered-tensor.
        registered = _reachable_tensors(module, self.inputs)
        for leaf in _graph_leaves(_flat_tensors(output)):
            if id(leaf) not in registered:
                where = names.name_of(leaf) or f"a tensor of shape {tuple(leaf.shape)}"
                self.add(
                    "state-in-forward",
                    where,
                    "is made in forward() with requires_grad=True and reaches the output, "
                    "but it is not a registered parameter (the optimizer never sees it)",
                )

    def check_gradients(self, module: nn.Module, output: Any) -> None:
        if "unused-parameter" in self.skip:
            return
        trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        for _, parameter in trainable:
            parameter.grad = None
        scalar = self.loss(output)
        if scalar.requires_grad:
            scalar.backward()
        for name, parameter in trainable:
            if parameter.grad is None:
                self.add(
                    "unused-parameter",
                    f"parameter '{name}'",
                    "receives no gradient from a backward pass through the output",
                )

    # -- rules 2, 3: every tensor and module reachable from attributes is registered -------

    def registration(self) -> None:
        module = self.copy_of(self.base)
        self.call(module)  # attributes set in forward() count too
        registered = {id(t) for t in (*module.parameters(), *module.buffers())}
        submodules = {id(m) for m in module.modules()}
        for path, value in _attributes(module):
            for item_path, item in _walk(value, path):
                if isinstance(item, nn.Module) and id(item) not in submodules:
                    self.add(
                        "plain-container",
                        f"submodule '{item_path}'",
                        f"a {type(item).__name__} held in a plain {type(value).__name__}",
                    )
                elif isinstance(item, nn.Parameter) and id(item) not in registered:
                    self.add(
                        "plain-container",
                        f"parameter '{item_path}'",
                        f"an nn.Parameter held in a plain {type(value).__name__}",
                    )
                elif isinstance(item, Tensor) and id(item) not in registered:
                    self.add(
                        "unregistered-tensor",
                        f"attribute '{item_path}'",
                        f"a tensor of shape {tuple(item.shape)} that is neither a parameter "
                        "nor a buffer",
                    )

    # -- rule 4: run on the meta device ----------------------------------------------------

    def fixed_device(self) -> None:
        module = self.copy_of(self.base).to("meta")
        inputs = _map_tensors(lambda t: t.to("meta"), self.inputs)
        for kind, name, tensor in _state(module):
            if not tensor.is_meta:
                self.add("follows-to", f"{kind} '{name}'", f"stayed on {tensor.device}")
        watch = _CreationWatch(
            lambda t: t.dim() > 0 and not t.is_meta,
            known=_reachable_tensors(module, inputs),
            fixed=_fixed_device,
        )
        try:
            with watch:
                output = self.call(module, inputs)
        # Meta tensors cannot run every op (data-dependent ones): only what was seen counts.
        except Exception:  # noqa: BLE001
            output = None
        for where, problem in watch.found.items():
            self.add("fixed-device", where, f"{problem} (the module ran on the meta device)")
        for index, tensor in enumerate(_flat_tensors(output)):
            if not tensor.is_meta and not watch.found:
                self.add("fixed-device", f"output {index}", f"is on {tensor.device}, not meta")

    # -- rules 5, 7: run in float64 --------------------------------------------------------

    def fixed_dtype(self) -> None:
        module = self.copy_of(self.base)
        dtypes = {name: t.dtype for _, name, t in _state(module)}
        module = module.to(torch.float64)
        for kind, name, tensor in _state(module):
            wanted = torch.float64 if dtypes[name].is_floating_point else dtypes[name]
            if tensor.dtype != wanted:
                self.add("follows-to", f"{kind} '{name}'", f"is {tensor.dtype} after .to({wanted})")
        if "fixed-dtype" in self.skip:
            return
        inputs = _map_tensors(_to_float64, self.inputs)
        watch = _CreationWatch(
            lambda t: t.dim() > 0 and t.is_floating_point() and t.dtype != torch.float64,
            known=_reachable_tensors(module, inputs),
            fixed=lambda *_: None,  # a fixed dtype shows in the tensors it makes
        )
        try:
            with watch:
                output = self.call(module, inputs)
        # Reported below, unless the line at fault was found, or another rule explains it.
        except Exception as error:  # noqa: BLE001
            if not watch.found and not self.rules_found() & _STRUCTURAL:
                self.add("fixed-dtype", _where(error), f"float64 forward() raised {error}")
            output = None
        for where, problem in watch.found.items():
            self.add("fixed-dtype", where, f"{problem} in a float64 module")
        for index, tensor in enumerate(_flat_tensors(output)):
            if tensor.is_floating_point() and tensor.dtype != torch.float64 and not watch.found:
                self.add("fixed-dtype", f"output {index}", f"is {tensor.dtype}, not float64")

    # -- rule 8: state_dict round trip -----------------------------------------------------

    def state_dict_round_trip(self) -> None:
        source = self.copy_of(self.base).train()
        with torch.no_grad():
            self.call(source)  # let training-mode state (running statistics) move
        source.eval()
        with torch.no_grad():
            _seed()  # the same random numbers, if any, for both calls
            expected = self.call(source)
        state = source.state_dict()
        for path, submodule in source.named_modules():
            for name in submodule._non_persistent_buffers_set:
                key = f"{path}.{name}" if path else name
                if key in state:
                    self.add("state-dict", f"buffer '{key}'", "non-persistent, yet saved")
        buffer = io.BytesIO()
        torch.save(state, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=True)
        # A copy whose every value differs: reinitialised, then every saved tensor NaN.
        target = self.copy_of(source)
        _reset_parameters(target)
        with torch.no_grad():
            for tensor in target.state_dict(keep_vars=True).values():
                if isinstance(tensor, Tensor) and tensor.is_floating_point():
                    tensor.fill_(math.nan)
        target.load_state_dict(loaded, strict=True)
        target.eval()
        with torch.no_grad():
            _seed()
            actual = self.call(target)
        if not self.same(actual, expected):
            differing = [
                f"buffer '{name}'"
                for name, tensor in source.named_buffers()
                if not self.same(tensor, target.get_buffer(name))
            ]
            self.add(
                "state-dict",
                ", ".join(differing) or type(self.module).__name__,
                "a copy loaded from state_dict() gives other outputs"
                + (" (these differ after loading)" if differing else ""),
            )

    # -- rule 10: eval mode ----------------------------------------------------------------

    def eval_inference(self) -> None:
        module = self.copy_of(self.base).eval()
        before = {name: t.clone() for _, name, t in _state(module)}
        with torch.no_grad():
            first = self.call(module)
            second = self.call(module)
        if not self.same(first, second):
            changed = [name for _, name, t in _state(module) if not self.same(t, before[name])]
            where = ", ".join(f"'{name}'" for name in changed) or self.first_difference(module)
            self.add(
                "eval-inference",
                where,
                "two eval-mode calls on the same inputs give different outputs"
                + (" (this state changed in eval mode)" if changed else ""),
            )
        graph = [i for i, t in enumerate(_flat_tensors(first)) if t.requires_grad]
        if graph:
            watch = _FirstCall(lambda t: t.grad_fn is not None)
            with torch.no_grad(), watch:
                self.call(module)
            self.add(
                "eval-inference",
                watch.where or f"output {graph[0]}",
                "builds an autograd graph under torch.no_grad()",
            )
        with torch.inference_mode():
            third = self.call(module)
        if self.same(first, second) and not self.same(third, first):
            self.add("eval-inference", "output", "differs under torch.inference_mode()")

    def first_difference(self, module: nn.Module) -> str:
        """The first line whose torch call gives other values on the same inputs."""
        traces: list[list[tuple[str, list[float]]]] = []
        for _ in range(2):
            trace = _Trace()
            with torch.no_grad(), trace:
                self.call(module)
            traces.append(trace.calls)
        for (where, fingerprint), (_, other) in zip(traces[0], traces[1], strict=False):
            if fingerprint != other:
                return where
        return type(self.module).__name__

    # -- rule 11: meta construction, to_empty(), reset_parameters() ------------------------

    def meta_init(self) -> None:
        if self.factory is None:
            return
        module = self.factory(device="meta")
        for kind, name, tensor in _state(module):
            if not tensor.is_meta:
                self.add(
                    "meta-init",
                    f"{kind} '{name}'",
                    f"factory(device='meta') made it on {tensor.device}",
                )
        devices = {t.device for _, _, t in _state(self.base)}
        module.to_empty(device=devices.pop() if len(devices) == 1 else "cpu")
        with torch.no_grad():  # what reset_parameters() leaves alone stays NaN
            for _, _, tensor in _state(module):
                if tensor.is_floating_point():
                    tensor.fill_(math.nan)
        _reset_parameters(module)
        for kind, name, tensor in _state(module):
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                self.add(
                    "meta-init",
                    f"{kind} '{name}'",
                    "is not finite after to_empty() and reset_parameters(): nothing sets it",
                )

    def rules_found(self) -> set[str]:
        return {violation.rule for violation in self.violations}

    def same(self, actual: Any, expected: Any) -> bool:
        try:
            torch.testing.assert_close(
                actual, expected, rtol=self.rtol, atol=self.atol, equal_nan=True
            )
        except (AssertionError, TypeError, ValueError):
            return False
        return True


# -- helpers ---------------------------------------------------------------------------------


def _cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []


def _seed() -> None:
    """Seed the generators that fork_rng restores, and no other (no lazy CUDA seeding)."""
    torch.default_generator.manual_seed(0)
    for device in _cuda_devices():
        torch.cuda.default_generators[device].manual_seed(0)


def _sum_of_outputs(output: Any) -> Tensor:
    parts = [t.sum() for t in _flat_tensors(output) if t.is_floating_point() and t.requires_grad]
    return sum(parts, torch.zeros(()))


def _to_float64(tensor: Tensor) -> Tensor:
    return tensor.to(torch.float64) if tensor.is_floating_point() else tensor


def _map_tensors(fn: Callable[[Tensor], Tensor], value: Any) -> Any:
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return type(value)(*(_map_tensors(fn, v) for v in value))
    if isinstance(value, list | tuple):
        return type(value)(_map_tensors(fn, v) for v in value)
    if isinstance(value, dict):
        return {k: _map_tensors(fn, v) for k, v in value.items()}
    return value


def _flat_tensors(value: Any, depth: int = 0) -> list[Tensor]:
    """The tensors in ``value``, looking into tuples, lists and dicts."""
    if isinstance(value, Tensor):
        return [value]
    if depth < 8 and isinstance(value, dict):
        value = list(value.values())
    if depth < 8 and isinstance(value, list | tuple):
        return [t for item in value for t in _flat_tensors(item, depth + 1)]
    return []


def _state(module: nn.Module) -> Iterator[tuple[str, str, Tensor]]:
    """("parameter" | "buffer", name, tensor) for every registered tensor."""
    for name, parameter in module.named_parameters():
        yield "parameter", name, parameter
    for name, buffer in module.named_buffers():
        yield "buffer", name, buffer


def _registry(module: nn.Module) -> dict[str, int]:
    """Everything registered, by name, with the identity of the object."""
    names = {f"parameter '{n}'": id(p) for n, p in module.named_parameters()}
    names |= {f"buffer '{n}'": id(b) for n, b in module.named_buffers()}
    names |= {f"submodule '{n}'": id(m) for n, m in module.named_modules() if n}
    return names


def _attributes(module: nn.Module) -> Iterator[tuple[str, Any]]:
    """Every plain attribute (not nn.Module's own bookkeeping) in the module tree."""
    for path, submodule in module.named_modules():
        for name, value in vars(submodule).items():
            if name not in _MODULE_INTERNALS:
                yield (f"{path}.{name}" if path else name), value


def _walk(value: Any, path: str, depth: int = 0) -> Iterator[tuple[str, Any]]:
    """``value`` and, for plain containers, what they hold (a few levels, 1000 items deep)."""
    yield path, value
    if depth >= 4 or not isinstance(value, _CONTAINERS):
        return
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in itertools.islice(items, 1000):
        yield from _walk(item, f"{path}[{key!r}]", depth + 1)


def _size(value: Any) -> int:
    """Elements held: tensor elements plus the lengths of plain containers."""
    return sum(
        item.numel() if isinstance(item, Tensor) else len(item)
        for _, item in _walk(value, "")
        if isinstance(item, _SIZED)
    )


def _footprint(module: nn.Module) -> dict[str, int]:
    sizes = {f"attribute '{path}'": _size(value) for path, value in _attributes(module)}
    sizes |= {f"buffer '{name}'": b.numel() for name, b in module.named_buffers()}
    for path, submodule in module.named_modules():
        for hooks in _HOOK_DICTS:
            sizes[f"{path or 'module'}.{hooks}"] = len(getattr(submodule, hooks, {}))
    return sizes


def _reachable_tensors(module: nn.Module, inputs: Any) -> set[int]:
    """Identities of the inputs and of every tensor the module holds, registered or not."""
    known = {id(t) for _, _, t in _state(module)} | {id(t) for t in _flat_tensors(inputs)}
    for path, value in _attributes(module):
        for _, item in _walk(value, path):
            if isinstance(item, Tensor):
                known.add(id(item))
            elif isinstance(item, nn.Module):  # held in a plain container
                known |= {id(t) for _, _, t in _state(item)}
    return known


def _graph_leaves(outputs: list[Tensor]) -> Iterator[Tensor]:
    """Every leaf tensor that requires grad and reaches ``outputs`` through autograd."""
    seen: dict[int, Any] = {}  # the nodes are kept alive, so that identities stay unique
    stack = [t.grad_fn for t in outputs]
    for tensor in outputs:
        if tensor.requires_grad and tensor.grad_fn is None:
            yield tensor
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen[id(node)] = node
        leaf = getattr(node, "variable", None)  # AccumulateGrad: the node of a leaf
        if isinstance(leaf, Tensor):
            yield leaf
        stack.extend(child for child, _ in node.next_functions)


def _reset_parameters(module: nn.Module) -> None:
    """Call every submodule's reset_parameters(), as FSDP2 and meta-device recipes do.

    A few torch.nn layers (nn.MultiheadAttention) only have a private _reset_parameters().
    """
    for submodule in module.modules():
        reset = getattr(submodule, "reset_parameters", None)
        reset = reset or getattr(submodule, "_reset_parameters", None)
        if callable(reset):
            reset()


def _is_library(filename: str) -> bool:
    """Code of torch, of the standard library or of this module (not the user's)."""
    if filename == __file__ or filename.startswith((_TORCH_DIR, "<")):
        return True
    return filename.startswith(_STDLIB_DIR) and not filename.startswith(_SITE_DIRS)


def _format_frame(filename: str, lineno: int | None, line: str | None) -> str:
    with contextlib.suppress(ValueError):  # outside the working directory: keep it whole
        filename = str(Path(filename).resolve().relative_to(Path.cwd()))
    return f"{filename}:{lineno} `{(line or '').strip()}`"


def _caller() -> str:
    """Where the user's code (outside torch and this module) is now."""
    for frame in reversed(traceback.extract_stack()):
        if not _is_library(frame.filename):
            return _format_frame(frame.filename, frame.lineno, frame.line)
    return "inside torch"


def _where(error: BaseException) -> str:
    """The innermost line of the user's code in an exception's traceback."""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if not _is_library(frame.filename):
            return _format_frame(frame.filename, frame.lineno, frame.line)
    return "forward()"


def _describe(error: BaseException) -> str:
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0] if message else ''}"


def _function_name(func: Any) -> str:
    """``torch.arange``, ``Tensor.to``: the name the user's code called."""
    name = str(getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func)))
    owner, _, short = name.rpartition(".")
    if owner.endswith("TensorBase"):
        return f"Tensor.{short}"
    if owner.endswith("VariableFunctionsClass"):
        return f"torch.{short}"
    return name


def _fingerprint(tensor: Tensor) -> float:
    values = tensor.detach()
    values = values.abs() if values.is_complex() else values
    return float(torch.nan_to_num(values.double()).sum())


def _describe_tensor(tensor: Tensor) -> str:
    return f"{tensor.dtype} tensor on {tensor.device}, shape {tuple(tensor.shape)}"


def _fixed_device(func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str | None:
    """A device named in a torch call made while the module runs on meta: a fixed one."""
    name = getattr(func, "__name__", "")
    if name in {"cpu", "cuda", "mps", "xpu"}:  # Tensor.cpu(), Tensor.cuda()
        return "a fixed device"
    candidates = [kwargs.get("device")]
    if name == "to":  # Tensor.to("cpu"), Tensor.to(torch.device("cuda"), ...)
        candidates += [a for a in args if isinstance(a, str | torch.device)]
    for device in candidates:
        if device is not None and torch.device(device).type != "meta":
            return f"device={str(device)!r}"
    return None


class _CreationWatch(TorchFunctionMode):
    """Finds the lines that make "off" tensors (wrong device or dtype) during forward().

    A torch call is reported when ``fixed`` finds a fixed argument in it (``device="cpu"``,
    ``.cuda()``: checked before the call, which may fail), when it receives an off tensor
    that is neither an input nor state of the module (a global), or when it returns an off
    tensor without receiving one (it made it: a factory function, ``.float()``). Calls that
    only pass an off tensor along are not reported: the line that made it is.
    """

    def __init__(
        self,
        off: Callable[[Tensor], bool],
        known: set[int],
        fixed: Callable[[Callable[..., Any], tuple[Any, ...], Mapping[str, Any]], str | None],
    ) -> None:
        super().__init__()
        self.off = off
        self.known = known
        self.fixed = fixed
        self.made: list[Tensor] = []  # kept alive, so that identities stay unique
        self.found: dict[str, str] = {}

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Collection[type],
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        name = _function_name(func)
        received = [t for t in _flat_tensors((args, kwargs)) if self.off(t)]
        made = {id(t) for t in self.made}
        foreign = [t for t in received if id(t) not in self.known and id(t) not in made]
        fixed = self.fixed(func, args, kwargs)
        if fixed is not None:
            self.found.setdefault(_caller(), f"{name}() called with {fixed}")
        elif foreign:
            problem = f"{name}() received a {_describe_tensor(foreign[0])}"
            self.found.setdefault(_caller(), problem + " that is neither input nor state")
        result = func(*args, **kwargs)
        returned = [t for t in _flat_tensors(result) if self.off(t)]
        if returned and not received and fixed is None:
            self.found.setdefault(_caller(), f"{name}() made a {_describe_tensor(returned[0])}")
        self.made.extend(returned)
        return result


class _FirstCall(TorchFunctionMode):
    """The line of the first torch call that returns a tensor matching ``match``."""

    def __init__(self, match: Callable[[Tensor], bool]) -> None:
        super().__init__()
        self.match = match
        self.where = ""

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Collection[type],
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        result = func(*args, **(kwargs or {}))
        if not self.where and any(self.match(t) for t in _flat_tensors(result)):
            self.where = _caller()
        return result


class _Trace(TorchFunctionMode):
    """(line, fingerprint of the values) of every torch call made by the user's code."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, list[float]]] = []

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Collection[type],
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        result = func(*args, **(kwargs or {}))
        tensors = _flat_tensors(result)
        if tensors:
            fingerprint = [_fingerprint(t) for t in tensors]
            self.calls.append((_caller(), fingerprint))
        return result


class _LocalNames:
    """Records the local variable names of leaf tensors that require grad in user frames.

    While active (one forward() call), a profile function looks at each frame of code
    outside torch as it returns, so that a parameter made as a local variable in forward()
    can be reported by its name.
    """

    def __init__(self) -> None:
        self.names: list[tuple[weakref.ref[Tensor], str]] = []
        self.previous: Any = None

    def __enter__(self) -> None:
        self.previous = sys.getprofile()
        sys.setprofile(self.profile)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        sys.setprofile(self.previous)

    def profile(self, frame: FrameType, event: str, _arg: object) -> None:
        if event != "return" or _is_library(frame.f_code.co_filename):
            return
        for name, value in frame.f_locals.items():
            if isinstance(value, Tensor) and value.requires_grad and value.grad_fn is None:
                where = f"local '{name}' in {frame.f_code.co_name}()"
                self.names.append((weakref.ref(value), where))

    def name_of(self, tensor: Tensor) -> str | None:
        for ref, name in self.names:
            if ref() is tensor:
                return name
        return None
