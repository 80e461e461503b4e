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
that crashes is reported the same way (kind ``crash``). The rules (the names that
``rules=`` and ``skip=`` take) are in :data:`RULES`; ``rules=["fixed-dtype"]`` checks one
alone, so that a parametrized test names the rule that failed. The example inputs must
suit training mode too (more than one sample for batch norm). The module under test is
never changed: every probe runs on a deep copy, and the global random state is restored
(if ``copy.deepcopy`` fails, the crash names the attribute, and the rules that need no
copy are checked on the module itself).

How the rules that cannot be seen by looking at the module are found:

* fixed device: a copy moved to the ``meta`` device runs the inputs moved there (in
  training and in eval mode), so a tensor made on the CPU shows up on a CPU-only machine.
  A call that names a device is reported and then run on ``meta``, so the run goes on to
  the next line. If your code asked ``torch.cuda.is_available()``, the run is repeated
  with that function answering ``True``, so that a branch written for GPUs is checked
  too; the same if your code read a tensor's device (``x.device``, ``x.is_cuda``): in that
  run its tensors say they are on ``cuda:1``, a GPU that is not the current one, so that
  ``device=x.device`` passes and ``x.device.type``, ``"cuda"`` or ``.cuda()`` does not.
  ``torch.autocast`` entered with another device type than the inputs', and a
  ``torch.Generator`` on another device than the tensors it draws for, are reported. If
  the meta run stops early (an op that needs values, such as ``if torch.isnan(x).any()``),
  the report says on which line, and the rest is checked on the real device by looking
  at the arguments of each torch call (a string device, ``.cuda()``, a factory such as
  ``torch.arange(n)`` without ``device=``).
* fixed dtype: a copy converted to bfloat16, the precision models train in, runs
  (training and eval mode); a float tensor of another dtype that reaches an output or the
  state is reported at the line that made it. A float32 step cast back (RMSNorm,
  ``softmax(x.float()).type_as(x)``, an MoE router) is accepted: it computes in float32 on
  purpose. So is a non-persistent buffer that the module's own ``_apply()`` keeps in
  float32 (timm's rotary bands). A float16 copy, run on one sample, finds constants that
  overflow it (``masked_fill(mask, -1e9)``). An op with no bfloat16 kernel on this device
  is noted, not reported.
* unused parameter: a parameter that gets no gradient but was computed with is followed
  through forward() to the call that cut its gradient (``.detach()``, an op under
  ``no_grad``, ``argmax()``, a NumPy round trip; a custom ``autograd.Function``'s
  ``backward()`` returning None), and that line is reported.
* outputs are compared by the tensors they hold, looking into tuples, dicts, dataclasses,
  model outputs and other objects (a key-value cache); what holds no tensor is noted.
* state: a training-mode call must change no trainable parameter in place and leave no
  buffer on the autograd graph; eval-mode calls must change no parameter or persistent
  buffer (non-persistent ones are caches). The fresh instance of the state round trip is
  built under another seed than the calls, and without ``factory=`` its non-persistent
  buffers come from ``reset_parameters()``, not from the copy.
* batch independence, checkpoint parity: the last sample alone, in eval mode, against its
  row of the batch (when every input shares a first dimension of at least 2); a
  training-mode forward and backward under ``torch.utils.checkpoint`` (non-reentrant)
  against a plain one, from the same random state (torch's, Python's, NumPy's); if the
  whole forward() is not repeatable, per block of its ``ModuleList``s, as trainers
  checkpoint.
* all of these watch the torch calls made by your code (``torch.overrides.TorchFunctionMode``)
  to report the line that made the offending tensor; a line inside an installed library
  is reported as the line of your code that called it.

This module is for tests only: nothing in the package imports it.
"""

from __future__ import annotations

import ast
import collections
import contextlib
import copy
import dataclasses
import enum
import inspect
import io
import itertools
import linecache
import math
import os
import pickle
import random
import re
import sys
import sysconfig
import textwrap
import traceback
import types
import warnings
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NamedTuple
from unittest import mock

import torch
import torch.utils.checkpoint
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.overrides import TorchFunctionMode

__all__ = ["RULES", "ContractReport", "ModuleContractError", "Violation", "check_module_contract"]

RULES: dict[str, str] = {
    "state-in-forward": "forward() creates no parameter or buffer, on self or as a local, "
    "replaces none, changes no trainable parameter and leaves no buffer on the autograd graph",
    "plain-container": "submodules and parameters are not held in plain lists, tuples or dicts",
    "unregistered-tensor": "every tensor attribute is a registered parameter or buffer",
    "fixed-device": "forward() creates no tensor on a fixed device (training and eval mode)",
    "fixed-dtype": "the module converted to bfloat16 gives bfloat16 outputs and state (a "
    "float32 step cast back is fine), and no constant overflows float16",
    "backward": "the backward pass through the output runs",
    "unused-parameter": "every trainable parameter receives a gradient",
    "follows-to": ".to() moves and casts every parameter and buffer",
    "state-dict": "state_dict() loaded into a fresh instance gives the same outputs",
    "growing-state": "forward() does not accumulate state across calls (training and eval mode)",
    "eval-inference": "eval-mode inference is deterministic, builds no autograd graph and "
    "changes no parameter or persistent buffer",
    "meta-init": "meta construction, to_empty() and reset_parameters() give finite state",
    "factory-kwargs": "factory(device=..., dtype=...) puts every tensor on that device and dtype",
    "non-contiguous": "non-contiguous inputs give the same outputs as contiguous ones",
    "pickle": "a pickled and unpickled copy gives the same outputs",
    "repr": "repr() works",
    "finite-output": "finite inputs give finite outputs (no NaN or Inf) in eval mode",
    "batch-independence": "in eval mode, a sample alone gives the same outputs as in a batch",
    "checkpoint-parity": "activation checkpointing (torch.utils.checkpoint, non-reentrant, "
    "per block of a ModuleList or Sequential, else around the whole forward) "
    "gives the same outputs and gradients",
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
    "torch.zeros_like, x.new_zeros); cast an upcast back (.to(x.dtype)) before it meets "
    "other tensors",
    "backward": "make the backward pass run: no in-place change of a tensor that autograd "
    "saved, no backward() of your own that fails",
    "unused-parameter": "use it in forward(), delete it, or freeze it with "
    "requires_grad_(False); DistributedDataParallel fails on it "
    '("Expected to have finished reduction in the prior iteration")',
    "follows-to": "keep state in parameters and buffers and leave Module._apply alone",
    "state-dict": "save trained state: a persistent buffer (register_buffer(..., "
    "persistent=True)) or a parameter, of a size known in __init__; non-persistent buffers "
    "must be recomputed by reset_parameters()",
    "growing-state": "do not keep tensors across calls; return them, or log a detached "
    "copy outside the module",
    "eval-inference": "gate randomness on self.training (F.dropout(x, p, self.training)), "
    "leave buffers alone in eval mode, and never re-enable autograd inside forward()",
    "meta-init": "pass device=/dtype= to every tensor made in __init__ and fill them all in "
    "reset_parameters() (non-persistent buffers included); a model with an initialiser of "
    'its own (init_weights()) names it: check_module_contract(..., init="init_weights")',
    "factory-kwargs": "pass device= and dtype= on to every parameter, buffer and submodule "
    "made in __init__",
    "non-contiguous": "do not rely on memory layout: reshape() instead of view(), and no "
    "data_ptr() or stride() arithmetic",
    "pickle": "keep attributes picklable (no lambdas, open files or locks), so that "
    "multiprocessing and torch.save(module) work",
    "repr": "make extra_repr() return a string built from attributes set in __init__",
    "stale-skip": "remove the skip, or correct the place it names",
    "finite-output": "guard the operation named: an eps in divisions, norms and logs "
    "(x / (norm + eps), log(x.clamp_min(eps))), torch.finfo(dtype).min instead of -inf in "
    "masks, and no softmax over a row that is all masked",
    "batch-independence": "compute each sample from itself in eval mode: running statistics "
    "(not the batch's) in normalisation, and no reduction or reshape across the batch "
    "dimension",
    "checkpoint-parity": "make forward() repeatable, as checkpointing runs it again in "
    "backward: draw random numbers with torch (torch.rand, F.dropout: checkpoint restores "
    "their state), not with random or NumPy, and keep no Python state that changes between "
    "calls",
}
_META_VALUE_FIX = (
    "a value is read while the module is built (.item(), bool(), an if on a tensor: "
    "torch's orthogonal parametrization does), which a meta tensor does not have: move it "
    "to reset_parameters(), or apply it after to_empty()"
)
_ORIGINAL_FIX = (
    "assign the parametrized tensor in reset_parameters() (self.weight = value goes "
    "through right_inverse and sets the originals); initialising it in place changes a "
    "computed copy, or register the parametrization after to_empty() and reset_parameters()"
)
_ACTIVATION_FIX = (
    "do not keep graph-attached tensors on self (each one keeps its whole autograd graph "
    "alive): return it from forward(); or keep a detached copy (.detach()), knowing that it "
    "does not follow .to() and is not saved"
)
_GRADIENT_CUT_FIX = (
    "let the gradient through that line (no .detach(), torch.no_grad(), NumPy or Python "
    "round trip, re-entrant checkpoint, or integer result such as argmax() on the path; a "
    "custom autograd.Function's backward() returns a gradient for every input), or freeze "
    "the parameter with requires_grad_(False) if it is not meant to learn"
)
_REPLACED_FIX = (
    "update the buffer in place under torch.no_grad() (self.buf.copy_(new), mul_, "
    "index_copy_): a new tensor every call escapes .to(), FSDP and anything holding the old one"
)

# Blind spots (issue #23): the fixes of findings that the rules' own fixes do not cover.
_DEVICE_PROPERTY_FIX = (
    "derive the device itself, not its type or a guess from it: device=x.device, "
    "x.new_zeros(...), .to(x.device); x.device.type, .cuda() and 'cuda' name the current "
    "GPU, not the input's (cuda:1 under DistributedDataParallel)"
)
_AUTOCAST_FIX = (
    "take autocast's device type from the input: torch.autocast(x.device.type, ...); a "
    "fixed 'cuda' leaves the CPU (or any other device) in the autocast state around it"
)
_GENERATOR_FIX = (
    "draw from a generator on the input's device: torch.Generator(device=x.device), seeded "
    "once per device; torch refuses a CPU generator for a GPU tensor"
)
_PLAIN_AFTER_TO_FIX = (
    "nn.Parameter(t).to(device, dtype) returns a plain tensor, not a parameter: make the "
    "tensor on its device and dtype inside nn.Parameter (nn.Parameter(torch.empty(n, "
    "device=device, dtype=dtype))) or register_buffer() it"
)
_GRAPH_BUFFER_FIX = (
    "update the buffer under torch.no_grad() (or from detached values): a buffer on the "
    "graph keeps every step's graph alive, and the next backward() fails on it"
)
_DRIFT_FIX = (
    "leave trainable parameters to the optimizer: compute the constrained value in "
    "forward() (w = self.weight.clamp(min=0)), or use torch.nn.utils.parametrize"
)
_EVAL_STATE_FIX = (
    "update statistics only in training mode (if self.training:), under torch.no_grad(); "
    "a validation pass must leave the saved state alone"
)
_HIDDEN_MODULE_FIX = (
    "assign it as an attribute (self.name = module), which nn.Module.__setattr__ registers, "
    "or hold it in an nn.ModuleList / nn.ModuleDict"
)
_PLAIN_OBJECT_FIX = (
    "hold it where nn.Module registers it: assign it to self, or use nn.ModuleDict / "
    "nn.ModuleList (a dataclass or a plain object registers nothing, so parameters(), .to() "
    "and state_dict() miss it)"
)
_UNCOPYABLE_FIX = (
    "make the attribute copyable: register a tensor computed from a parameter as a buffer "
    "(or compute it in forward()), create locks and handles where they are used, or give "
    "the class __deepcopy__ / __getstate__; every probe runs on a deep copy"
)

# nn.Module's own bookkeeping: every attribute an empty nn.Module has.
_MODULE_INTERNALS = frozenset(vars(nn.Module()))
_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_CONTAINERS = (list, tuple, dict, set, frozenset, collections.deque)
_SIZED = (Tensor, *_CONTAINERS)
# Values whose fields are not walked (registration, growth): they are not plain holders.
_OPAQUE = (
    Tensor,
    nn.Module,
    type,
    types.ModuleType,
    types.FunctionType,
    types.MethodType,
    types.BuiltinFunctionType,
    torch.Generator,
    enum.Enum,
)
# With the separator: torchvision's and torchaudio's folders start with torch's name too.
_TORCH_DIR = str(Path(torch.__file__).parent) + os.sep
_STDLIB_DIR = sysconfig.get_paths()["stdlib"]
_SITE_DIRS = (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])
_INSTALLED_DIRS = frozenset({"site-packages", "dist-packages"})
# What inspect and ast raise for a function whose source cannot be read.
_NO_SOURCE = (OSError, TypeError, SyntaxError)
# What torch.testing.assert_close raises for values apart, or for values it cannot compare.
_NOT_CLOSE = (AssertionError, TypeError, ValueError)
# Files in site-packages that count as the user's: the package of the module under test.
_user_dirs: tuple[str, ...] = ()
# Rules whose findings explain a crash of a converted copy.
_STRUCTURAL = frozenset({"plain-container", "unregistered-tensor", "follows-to"})
# The seed a fresh instance is built under: not the seed of the compared calls (0).
_FRESH_SEED = 0x5EED


class Violation(NamedTuple):
    """One broken rule: which rule, where (attribute, parameter or line), what, the fix."""

    rule: str
    where: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.where}: {self.problem}\n    fix: {self.fix}"


@dataclasses.dataclass
class ContractReport:
    """What a passing check saw: rules run, skips that matched, and notes on coverage."""

    rules: list[str]
    skipped: list[Violation]
    notes: list[str]


class ModuleContractError(AssertionError):
    """Raised by :func:`check_module_contract`; ``violations`` holds every rule broken."""

    def __init__(
        self,
        module_name: str,
        violations: list[Violation],
        skipped: Mapping[str, str] | None = None,
        notes: Collection[str] = (),
    ) -> None:
        self.violations = violations
        self.notes = list(notes)
        lines = [f"{module_name} breaks the nn.Module contract ({len(violations)} found):"]
        lines += [f"- {violation}" for violation in violations]
        lines += [f"(skip {key!r}: {reason})" for key, reason in (skipped or {}).items()]
        lines += [f"(note: {note})" for note in self.notes]
        super().__init__("\n".join(lines))

    @property
    def rules(self) -> set[str]:
        """The names of the rules broken."""
        return {violation.rule for violation in self.violations}


def check_module_contract(
    module: nn.Module,
    /,
    *example_inputs: Any,
    kwargs: Mapping[str, Any] | None = None,
    rules: Collection[str] | None = None,
    skip: Mapping[str, str] | None = None,
    factory: Callable[..., nn.Module] | None = None,
    loss: Callable[[Any], Tensor] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    init: str = "reset_parameters",
) -> ContractReport:
    """Check ``module`` against the rules of :data:`RULES`; raise if any is broken.

    Args:
        module: the module under test; it is not changed.
        example_inputs: positional inputs of ``module.forward``: tensors, possibly in
            tuples, lists, dicts or dataclasses (a batch); integer tensors are never cast.
        kwargs: keyword inputs of ``module.forward``, e.g. ``{"mask": mask}``.
        rules: check only these rules (default: all).
        skip: findings to accept, each mapped to the reason why. A key is a rule
            (``"fixed-dtype"``: the whole rule) or a rule and the place it covers,
            ``"rule@place"``: an attribute or parameter (``"fixed-dtype@scale"``), a
            function (``"fixed-dtype@attention()"``) or a line
            (``"fixed-dtype@blocks.py:42"``). A skip that matches no finding is reported
            (kind ``stale-skip``).
        factory: builds a fresh module when called as ``factory(device=..., dtype=...)``;
            turns on the ``meta-init`` and ``factory-kwargs`` rules, and the state_dict
            round trip loads into ``factory()`` (else into a copy of ``module``).
        loss: maps the output to the scalar whose backward pass must reach every trainable
            parameter. Default: the sum of every floating-point output.
        init: the name of the model's own initialiser, such as timm's and torchtitan's
            ``"init_weights"``: rule ``meta-init`` calls it on ``factory()``'s module after
            every submodule's ``reset_parameters()``. Default: ``reset_parameters`` alone.
        rtol: relative tolerance of output comparisons (default: torch.testing's).
        atol: absolute tolerance of output comparisons (default: torch.testing's).

    Returns:
        A :class:`ContractReport`: the rules run, the findings skipped, notes on coverage
        (a meta run that stopped early, an op a dtype does not support on this device).

    Raises:
        ModuleContractError: one or more rules broken, or the module crashed.
        ValueError: ``skip`` or ``rules`` names an unknown rule, or a skip gives no reason.
    """
    selected = list(RULES) if rules is None else list(rules)
    for rule in selected:
        if rule not in RULES:
            raise ValueError(f"rules: unknown rule {rule!r}; the rules are {', '.join(RULES)}")
    skip = dict(skip or {})
    for key, reason in skip.items():
        rule = key.partition("@")[0]
        if rule not in RULES:
            raise ValueError(f"skip: unknown rule {rule!r}; the rules are {', '.join(RULES)}")
        if not str(reason or "").strip():
            raise ValueError(f"skip: give the reason why {key!r} is accepted")
    if (rtol is None) != (atol is None):
        raise ValueError("give both rtol and atol, or neither")
    if init != "reset_parameters" and not callable(getattr(module, init, None)):
        raise ValueError(
            f"init: {type(module).__name__} has no method {init!r}; name the method that "
            "initialises its parameters and buffers (default: reset_parameters)"
        )
    global _user_dirs  # noqa: PLW0603 - one check at a time; restored below
    previous_dirs = _user_dirs
    _user_dirs = _package_dirs(module)
    checker = _Checker(module, example_inputs, dict(kwargs or {}), factory, loss, rtol, atol)
    checker.init = init
    try:
        # The random state is restored afterwards: CPU, and the GPUs if CUDA is in use.
        with torch.random.fork_rng(devices=_cuda_devices()):
            found = checker.run(set(selected))
    finally:
        _user_dirs = previous_dirs
    violations, skipped = _apply_skips(found, skip, set(selected))
    if violations:
        raise ModuleContractError(type(module).__name__, violations, skip, checker.notes)
    return ContractReport(selected, skipped, checker.notes)


def _skip_matches(key: str, violation: Violation) -> bool:
    rule, _, place = key.partition("@")
    if rule != violation.rule:
        return False
    if not place:
        return True
    where = violation.where
    if place.endswith("()"):
        return f" in {place}" in where
    if re.fullmatch(r".+:\d+", place):  # file:line, the file given by its end
        location = where.split(" ", 1)[0]
        return location == place or location.endswith(("/" + place, "\\" + place))
    return f"'{place}'" in where or where == place


def _apply_skips(
    found: list[Violation], skip: Mapping[str, str], selected: set[str]
) -> tuple[list[Violation], list[Violation]]:
    violations: list[Violation] = []
    skipped: list[Violation] = []
    used: set[str] = set()
    for violation in found:
        keys = [key for key in skip if _skip_matches(key, violation)]
        used.update(keys)
        (skipped if keys else violations).append(violation)
    for key in skip:
        if key not in used and key.partition("@")[0] in selected:
            problem = "matched no finding: the rule passes there now, or the place is misspelt"
            violations.append(Violation("stale-skip", key, problem, _FIXES["stale-skip"]))
    return violations, skipped


class _Crash(Exception):
    """The module could not run at all: no other rule can be checked."""


class _Checker:
    def __init__(
        self,
        module: nn.Module,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        factory: Callable[..., nn.Module] | None,
        loss: Callable[[Any], Tensor] | None,
        rtol: float | None,
        atol: float | None,
    ) -> None:
        self.module = module
        self.inputs: tuple[tuple[Any, ...], dict[str, Any]] = (args, kwargs)
        self.factory = factory
        self.loss = loss or _sum_of_outputs
        self.rtol = rtol
        self.atol = atol
        self.violations: list[Violation] = []
        self.notes: list[str] = []
        self.module_in_forward = False
        self.last_inputs: list[Tensor] = []  # the copies the last call() passed
        self.selected: set[str] = set()
        self.eval_varies = False  # two eval calls on the same inputs differ
        # train_calls() -> registration(): the copy, and its attributes' tensors before.
        self.trained: tuple[nn.Module, set[int]] | None = None
        self.reference_module: nn.Module | None = None  # eval_reference()'s copy
        self.eval_draws_random = False  # eval-mode calls drew from torch's generators
        # train_calls() -> checkpoint_parity(): a seeded training step's outputs and grads.
        self.plain_step: tuple[dict[str, Any], dict[str, Tensor | None]] | None = None
        # eval_calls() -> eval_inference(): the module, its state before, two outputs.
        self.eval_run: tuple[nn.Module, dict[str, Tensor], Any, Any] | None = None
        # The output of an eval-mode copy, seeded: non-contiguous and pickle compare to it.
        self.reference: Any = None
        self.init = "reset_parameters"  # rule meta-init's initialiser, besides reset_parameters

    # -- the driver -------------------------------------------------------------------

    def run(self, selected: set[str]) -> list[Violation]:
        self.selected = selected
        try:
            self.base = self.copy_of(self.module)
            # nn.Lazy* modules create their parameters on the first call, by design.
            lazy = any(isinstance(p, nn.UninitializedParameter) for p in self.base.parameters())
            self.first_call(self.base if lazy else self.copy_of(self.base))
        except _Crash:
            if not hasattr(self, "base"):  # deepcopy failed: check what needs no copy
                self.without_copy()
            return self.violations
        probes: list[tuple[tuple[str, ...], Callable[[], None]]] = [
            (
                ("state-in-forward", "backward", "unused-parameter", "growing-state"),
                self.train_calls,
            ),
            (("growing-state", "state-in-forward"), self.eval_calls),
            (("plain-container", "unregistered-tensor"), self.registration),
            (("fixed-device", "follows-to"), self.fixed_device),
            (("fixed-dtype", "follows-to"), self.fixed_dtype),
            # Before the probes that compare eval outputs: they mean nothing if two eval
            # calls on the same inputs differ.
            (("eval-inference",), self.eval_inference),
            (("state-dict",), self.state_dict_round_trip),
            (("meta-init",), self.meta_init),
            (("factory-kwargs",), self.factory_kwargs),
            (("non-contiguous",), self.non_contiguous),
            (("pickle",), self.pickle_round_trip),
            (("repr",), self.repr),
            (("finite-output",), self.finite_output),
            (("batch-independence",), self.batch_independence),
            (("checkpoint-parity",), self.checkpoint_parity),
        ]
        for probe_rules, probe in probes:
            if not selected.intersection(probe_rules):
                continue
            try:
                probe()
            except _Crash:
                break
            # A crash while probing is a finding, not a bug of the checker.
            except Exception as error:  # noqa: BLE001
                rule = next(r for r in probe_rules if r in selected)
                meta = rule in ("meta-init", "factory-kwargs") and "meta tensor" in str(error)
                self.add(rule, _where(error), _describe(error), _META_VALUE_FIX if meta else None)
            # A module made in forward(): its weights are new every call, and every other
            # rule would report the same mistake again. Reported once, by name.
            if self.module_in_forward:
                self.notes.append("the other rules were not checked: forward() makes a module")
                break
        # One finding per (rule, place): the same line found in training and eval mode.
        unique = {(v.rule, v.where): v for v in reversed(self.violations)}
        return [v for v in self.violations if unique[(v.rule, v.where)] is v]

    def add(self, rule: str, where: str, problem: str, fix: str | None = None) -> None:
        if rule in self.selected or rule == "crash":
            self.violations.append(Violation(rule, where, problem, fix or _FIXES[rule]))

    def copy_of(self, module: nn.Module) -> nn.Module:
        # A lazy module's uninitialised parameters and buffers refuse deepcopy: the copy
        # gets new uninitialised ones of the same kind (its first call sizes them).
        memo: dict[int, Any] = {
            id(t): _uninitialised_like(t)
            for _, _, t in _state(module)
            if isinstance(t, nn.UninitializedParameter | nn.UninitializedBuffer)
        }
        try:
            return copy.deepcopy(module, memo)
        except Exception as error:
            where, problem = _uncopyable(module)
            self.add(
                "crash",
                where,
                f"copy.deepcopy failed: {problem or error}; every probe runs on a copy",
                _UNCOPYABLE_FIX if problem else None,
            )
            raise _Crash from error

    def call(
        self, module: nn.Module, inputs: tuple[tuple[Any, ...], dict[str, Any]] | None = None
    ) -> Any:
        # Fresh copies every call: a forward() that changes its inputs cannot change the
        # next call's (clone() keeps the autograd link to an input that requires grad).
        args, kwargs = _map_tensors(torch.clone, self.inputs if inputs is None else inputs)
        self.last_inputs = _flat_tensors((args, kwargs))
        return module(*args, **kwargs)

    def converted(self, fn: Callable[[Tensor], Tensor]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        result: tuple[tuple[Any, ...], dict[str, Any]] = _map_tensors(fn, self.inputs)
        return result

    def first_call(self, module: nn.Module) -> Any:
        """Run forward once; if the module cannot run at all, no rule can be checked."""
        try:
            return self.call(module)
        except Exception as error:
            self.add("crash", _where(error), f"forward() raised {_describe(error)}")
            raise _Crash from error

    def same(self, actual: Any, expected: Any) -> bool:
        """Whether two outputs hold the same values: every tensor, by its path in them.

        Caches, dataclasses and model outputs are looked into (:func:`_held_values`); a
        value that cannot be compared is noted once, never counted as a difference.
        """
        held, wanted = _held_values(actual), _held_values(expected)
        if held.keys() != wanted.keys():
            return False
        return all(self.same_value(held[path], value, path) for path, value in wanted.items())

    def same_value(self, actual: Any, expected: Any, path: str) -> bool:
        if isinstance(expected, Tensor) and isinstance(actual, Tensor):
            rtol, atol = self.rtol, self.atol
            if rtol is None and expected.dtype in (torch.bfloat16, torch.half):
                # One rounding step apart (another summation order).
                rtol, atol = 1.6e-2, torch.finfo(expected.dtype).eps
            try:
                torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, equal_nan=True)
            except _NOT_CLOSE:
                return False
            return True
        if isinstance(expected, float) and isinstance(actual, float):
            return math.isclose(actual, expected) or (math.isnan(actual) and math.isnan(expected))
        if isinstance(expected, _PLAIN_VALUES) or isinstance(actual, Tensor):
            return bool(type(actual) is type(expected) and actual == expected)
        note = f"outputs: {path} ({type(expected).__name__}) holds no tensor; not compared"
        if note not in self.notes:
            self.notes.append(note)
        return True

    def compares_nothing(self, rule: str) -> bool:
        """Whether eval outputs differ call to call, so that comparing them proves nothing."""
        if self.eval_varies:
            self.notes.append(
                f"{rule}: outputs not compared, two eval calls on the same inputs differ "
                "(rule eval-inference)"
            )
        return self.eval_varies

    def rules_found(self) -> set[str]:
        return {violation.rule for violation in self.violations}

    # -- state-in-forward, backward, unused-parameter, growing-state: training calls -------

    def train_calls(self) -> None:
        module = self.copy_of(self.base).train()
        before = _registry(module)
        local_names = _LocalNames()
        trainable = _trainable_values(module)
        self.trained = (module, _attribute_tensors(module))  # for registration()
        # Seeded as checkpoint-parity seeds its runs, so that it compares against this one.
        with local_names, _other_random_states():
            _seed()
            _seed_other_random()
            output = self.call(module)
        plain_output = _snapshot(output)
        self.training_state_changes(module, trainable)
        after_first = _registry(module)
        appeared = sorted(after_first.keys() - before.keys())
        for name in appeared:
            owner = name.split("'")[1].rpartition(".")[0]
            if f"submodule '{owner}'" not in appeared:
                self.add("state-in-forward", name, "appeared during forward()")
                self.module_in_forward |= name.startswith("submodule")
        self.check_graph_leaves(module, output, local_names)
        try:
            self.check_gradients(module, output)
            grads = {name: p.grad for name, p in module.named_parameters()}
            self.plain_step = (plain_output, grads)  # checkpoint-parity's reference
        # The loss or the backward pass crashed: find the forward line autograd blames.
        except Exception as error:  # noqa: BLE001
            where = self.backward_line(error)
            self.add("backward", where, f"backward raised {_describe(error)}")
        del output
        self.repeat_calls(module, after_first, "training")

    def eval_calls(self) -> None:
        module = self.copy_of(self.base).eval()
        generators = _random_states()
        with torch.no_grad():
            first = self.call(module)
            before = {name: t.clone() for _, name, t in _state(module)}  # after a first call
            second = self.repeat_calls(module, _registry(module), "eval")
        self.eval_draws_random = _random_states_moved(generators)
        self.eval_run = (module, before, first, second)  # eval-inference compares them

    def repeat_calls(self, module: nn.Module, after_first: dict[str, int], mode: str) -> Any:
        """Two more calls: nothing grows, no parameter or buffer is a new tensor.

        Returns the output of the first of them (eval-inference compares it).
        """
        footprints = []
        outputs = []
        for _ in range(2):
            outputs.append(self.call(module))
            footprints.append(_footprint(module))
        if mode == "training":
            outputs.clear()  # their graphs are not needed
        after_third = _registry(module)
        changed = [n for n, i in after_first.items() if after_third.get(n, i) != i]
        owners = [n.split("'")[1] for n in changed if n.startswith("submodule")]
        for name in changed:
            path = name.split("'")[1]
            if any(path.startswith(owner + ".") for owner in owners):
                continue  # reported once, by its module
            fix = _REPLACED_FIX if name.startswith("buffer") else None
            problem = f"is a new object after every forward() ({mode} mode)"
            self.add("state-in-forward", name, problem, fix)
        for name, size in footprints[1].items():
            if size > footprints[0].get(name, 0):
                self.add(
                    "growing-state",
                    name,
                    f"grows with every forward() call in {mode} mode "
                    f"({footprints[0].get(name, 0)} -> {size} elements between the 2nd and "
                    "3rd call with the same inputs)",
                )
        return outputs[0] if outputs else None

    def check_graph_leaves(self, module: nn.Module, output: Any, names: _LocalNames) -> None:
        """A leaf that requires grad and reaches the output must be a registered parameter."""
        # Unregistered attributes are reported by rule unregistered-tensor.
        registered = _reachable_tensors(module, self.inputs)
        # An input, or a view of one, marked requires_grad (wav2vec2's feature encoder does,
        # for gradient checkpointing) is the input, not state.
        inputs = {_storage(t) for t in self.last_inputs if t.layout == torch.strided}
        reported: set[str] = set()
        for leaf in _graph_leaves(_output_tensors(output)):
            if id(leaf) in registered:
                continue
            if leaf.layout == torch.strided and _storage(leaf) in inputs:
                continue
            where = names.name_of(leaf) or f"a tensor of shape {tuple(leaf.shape)}"
            self.module_in_forward |= names.is_module(where)
            if where in reported:  # the parameters of one module made in forward()
                continue
            reported.add(where)
            self.add(
                "state-in-forward",
                where,
                "is made in forward() with requires_grad=True and reaches the output, "
                "but it is not a registered parameter (the optimizer never sees it)",
            )

    def check_gradients(self, module: nn.Module, output: Any) -> None:
        trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        for _, parameter in trainable:
            parameter.grad = None
        scalar = self.loss(output)
        if scalar.requires_grad:
            scalar.backward()
        starved = [name for name, parameter in trainable if parameter.grad is None]
        cuts = self.gradient_cuts(starved) if starved else {}
        for name in starved:
            if name in cuts:
                continue  # reported at the line that cut its gradient, below
            self.add(
                "unused-parameter",
                f"parameter '{name}'",
                "receives no gradient from a backward pass through the output",
            )
        lines: dict[str, tuple[str, list[str]]] = {}
        for name in starved:
            if name in cuts:
                where, how = cuts[name]
                lines.setdefault(where, (how, []))[1].append(f"'{name}'")
        for where, (how, names) in lines.items():
            subject = (
                f"parameters {', '.join(names)} get"
                if len(names) > 1
                else f"parameter {names[0]} gets"
            )
            self.add(
                "unused-parameter",
                where,
                f"{how}: {subject} no gradient through the output",
                _GRADIENT_CUT_FIX,
            )

    def gradient_cuts(self, starved: list[str]) -> dict[str, tuple[str, str]]:
        """For each parameter that got no gradient but was computed with: the line (and
        how) its gradient was cut, found by following its values through forward()."""
        module = self.copy_of(self.base).train()
        watch = _GradientCut(dict(module.named_parameters()), starved)
        with contextlib.suppress(Exception), watch:  # the first call ran: it runs
            self.call(module)
        return watch.cuts

    def backward_line(self, error: BaseException) -> str:
        """The user's line whose forward op failed in backward (autograd's anomaly mode)."""
        where = _where(error)  # a backward() of the user's own, if that is what failed
        if where != "forward()":
            return where
        module = self.copy_of(self.base).train()
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            with contextlib.suppress(Exception), torch.autograd.detect_anomaly(check_nan=False):
                self.loss(self.call(module)).backward()
        for message in record:
            text = str(message.message)
            if "Traceback of forward call" not in text:
                continue
            frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)', text)
            for filename, lineno, function, line in reversed(frames):
                if not _is_library(filename):
                    return _format_frame(filename, int(lineno), line, function)
        return "backward()"

    # -- plain-container, unregistered-tensor: everything reachable is registered ----------

    def registration(self) -> None:
        if self.trained is not None:  # train_calls()' copy: it ran forward() three times
            module, before = self.trained
            self.trained = None
        else:
            module = self.copy_of(self.base)
            before = _attribute_tensors(module)
            self.call(module)  # attributes set in forward() count too
        self.report_registration(module, before)

    def report_registration(self, module: nn.Module, before: set[int]) -> None:
        """Tensors and modules reachable from attributes, yet not registered."""
        registered = {id(t) for t in (*module.parameters(), *module.buffers())}
        submodules = {id(m) for m in module.modules()}
        for path, value in _attributes(module):
            # A dataclass or plain object holding modules: another fix than a list's.
            fix = None if isinstance(value, _CONTAINERS) else _PLAIN_OBJECT_FIX
            for item_path, item in _walk(value, path):
                if isinstance(item, nn.Module) and id(item) not in submodules:
                    if _inert(item):  # nothing for .to(), state_dict() or eval() to miss
                        note = f"plain-container: {item_path} holds no state and never reads "
                        self.notes.append(note + "self.training: accepted")
                        continue
                    held = (
                        "set as a plain attribute, outside nn.Module's registry "
                        "(object.__setattr__ or __dict__)"
                        if item is value
                        else f"held in a plain {type(value).__name__}"
                    )
                    self.add(
                        "plain-container",
                        f"submodule '{item_path}'",
                        f"a {type(item).__name__} {held}",
                        _HIDDEN_MODULE_FIX if item is value else fix,
                    )
                elif isinstance(item, nn.Parameter) and id(item) not in registered:
                    self.add(
                        "plain-container",
                        f"parameter '{item_path}'",
                        f"an nn.Parameter held in a plain {type(value).__name__}",
                        fix,
                    )
                elif isinstance(item, Tensor) and id(item) not in registered:
                    if id(item) in before:
                        problem = "is neither a parameter nor a buffer"
                        self.add("unregistered-tensor", f"attribute '{item_path}'", problem)
                        continue
                    attached = " attached to the autograd graph" if item.grad_fn else ""
                    problem = f"an activation{attached} kept on self by forward()"
                    self.add(
                        "unregistered-tensor", f"attribute '{item_path}'", problem, _ACTIVATION_FIX
                    )

    # -- fixed-device: run on the meta device ----------------------------------------------

    def fixed_device(self) -> None:
        module = self.copy_of(self.base).to("meta")
        for kind, name, tensor in _state(module):
            if not tensor.is_meta:
                self.add("follows-to", f"{kind} '{name}'", f"stayed on {tensor.device}")
        inputs = self.converted(lambda t: t.to("meta"))
        for mode in ("training", "eval"):
            asked = _CudaQuestion(answer=None)
            stopped = self.meta_run(module, inputs, mode, asked, "")
            if stopped:
                self.device_arguments_run(mode, stopped)
            # The user's code asked torch.cuda.is_available(), or read a tensor's device:
            # now check the branch written for GPUs, the inputs seen as on a second GPU.
            if asked.calls:
                gpu = _CudaQuestion(answer=True)
                note = (
                    ", as if on cuda:1 (torch.cuda.is_available() patched to True, and the "
                    "device, is_cuda and get_device() of its tensors answering cuda:1)"
                )
                stopped = self.meta_run(module, inputs, mode, gpu, note)
                if stopped:
                    self.notes.append(f"the {mode}-mode meta run{note} stopped at {stopped}")

    def meta_run(
        self,
        module: nn.Module,
        inputs: tuple[tuple[Any, ...], dict[str, Any]],
        mode: str,
        question: _CudaQuestion,
        note: str,
    ) -> str:
        """Run ``module`` on meta; report fixed devices; return where it stopped, or ""."""
        module.train(mode == "training")
        watch = _MetaWatch(
            known=_reachable_tensors(module, inputs),
            question=question,
            generators=_generator_names(module),
        )
        stopped = ""
        output = None
        with (
            contextlib.ExitStack() as stack,
            mock.patch.object(torch.cuda, "is_available", question),
            _AutocastWatch("cuda" if question.answer else "meta", watch),
        ):
            if mode == "eval":
                stack.enter_context(torch.no_grad())
            try:
                with watch:
                    output = self.call(module, inputs)
            # Meta tensors cannot run every op (data-dependent ones): say how far it got.
            except Exception as error:  # noqa: BLE001
                stopped = f"{_where(error)} ({_describe(error)})"
        for where, problem in watch.found.items():
            self.add(
                "fixed-device",
                where,
                f"{problem} (the module ran on the meta device in {mode} mode{note})",
                watch.fixes.get(where),
            )
        for index, tensor in enumerate(_output_tensors(output)):
            if not tensor.is_meta and not watch.found:
                self.add("fixed-device", f"output {index}", f"is on {tensor.device}, not meta")
        return stopped

    def device_arguments_run(self, mode: str, stopped: str) -> None:
        """After a meta run stopped early: the whole forward on the real device, by arguments."""
        self.notes.append(
            f"the {mode}-mode meta run stopped at {stopped}; the whole forward() was then "
            "checked on the real device by the device arguments of each torch call"
        )
        module = self.copy_of(self.base).train(mode == "training")
        watch = _DeviceArguments()
        with contextlib.ExitStack() as stack:
            if mode == "eval":
                stack.enter_context(torch.no_grad())
            with contextlib.suppress(Exception), watch:  # the first call ran: it runs
                self.call(module)
        for where, problem in watch.found.items():
            self.add("fixed-device", where, f"{problem} ({mode} mode, after the meta run stopped)")

    # -- fixed-dtype, follows-to: run in float64, bfloat16, float16 ----------------------------

    def fixed_dtype(self) -> None:
        # bfloat16: the precision users train in. There a float32 step is an upcast, and one
        # cast back (RMSNorm, a softmax, an MoE router) is no fault; in float64 it would be
        # a downcast. float16 then finds the constants that overflow it.
        dtype = torch.bfloat16
        if any(t.is_complex() for _, _, t in _state(self.base)):
            self.notes.append(
                "fixed-dtype, follows-to (dtype): not checked, the module holds complex "
                "tensors, which .to(bfloat16) would make real"
            )
            return
        module = self.copy_of(self.base)
        dtypes = {name: t.dtype for _, name, t in _state(module)}
        module = module.to(dtype)
        for kind, name, tensor in _state(module):
            wanted = dtype if dtypes[name].is_floating_point else dtypes[name]
            if tensor.dtype == wanted:
                continue
            if _kept_wider(module, name, tensor, wanted):
                self.notes.append(
                    f"follows-to: buffer '{name}' stays {tensor.dtype} after .to({wanted}), "
                    "by its module's own _apply(): a non-persistent, wider buffer, accepted"
                )
                continue
            self.add("follows-to", f"{kind} '{name}'", f"is {tensor.dtype} after .to({wanted})")
        if "fixed-dtype" in self.selected:
            for mode in ("training", "eval"):
                self.dtype_run(module, dtype, mode)
            self.float16_constants(module)

    def dtype_run(self, module: nn.Module, dtype: torch.dtype, mode: str) -> None:
        """Run a ``dtype`` copy; report where each tensor of another dtype that reaches the
        outputs or the state was made."""
        module.train(mode == "training")
        inputs = self.converted(lambda t: t.to(dtype) if t.is_floating_point() else t)
        watch = _DtypeWatch(dtype, known=_reachable_tensors(module, inputs))
        name = str(dtype).removeprefix("torch.")
        output = None
        with contextlib.ExitStack() as stack:
            if mode == "eval":
                stack.enter_context(torch.no_grad())
            try:
                with watch:
                    output = self.call(module, inputs)
            # Reported below, unless the op has no kernel for dtype, or another rule explains it.
            except Exception as error:  # noqa: BLE001
                self.dtype_run_failed(error, watch, name, mode)
        reaching = [(f"output {i}", t) for i, t in enumerate(_output_tensors(output))]
        reaching += [(f"{kind} '{n}'", t) for kind, n, t in _state(module) if id(t) in watch.origin]
        for place, tensor in reaching:
            if tensor.dim() == 0 or not tensor.is_floating_point() or tensor.dtype == dtype:
                continue
            origins = watch.origin.get(id(tensor), ())
            if not origins and self.rules_found() & _STRUCTURAL:
                continue  # state that did not follow .to(): explained already
            for origin in origins or (place,):
                self.add(
                    "fixed-dtype",
                    origin,
                    f"made a {tensor.dtype} tensor that reaches {place} of a {name} module "
                    f"({mode} mode)",
                )

    def dtype_run_failed(self, error: Exception, watch: _DtypeWatch, name: str, mode: str) -> None:
        failed = watch.failed
        if failed is not None and not failed[1]:  # every float input had the probed dtype
            self.notes.append(
                f"the {name} run ({mode} mode) stopped at {_where(error)}: {failed[0]}() has "
                f"no {name} kernel here ({_describe(error)}); the rest of the run is unchecked"
            )
        elif failed is not None and failed[2]:  # a tensor made in another dtype met it
            for origin in failed[2]:
                self.add(
                    "fixed-dtype",
                    origin,
                    f"made a tensor of another dtype that meets {name} tensors in {failed[0]}() "
                    f"at {_where(error)}, which raised {_describe(error)} ({mode} mode)",
                )
        elif not self.rules_found() & _STRUCTURAL:
            self.add("fixed-dtype", _where(error), f"{name} forward() raised {_describe(error)}")

    def float16_constants(self, module: nn.Module) -> None:
        """Run ``module`` (the bfloat16 copy) converted to float16, on one sample."""
        module = module.to(torch.float16).eval()
        inputs = self.converted(lambda t: t.half() if t.is_floating_point() else t)
        try:
            with torch.no_grad():
                try:  # a constant overflows whatever the batch: one sample is enough
                    self.call(module, _one_sample(inputs))
                except Exception as error:
                    if "overflow" in str(error):
                        raise
                    self.call(module, inputs)
        except Exception as error:  # noqa: BLE001 - only an overflow is this rule's
            if "overflow" in str(error):
                self.add(
                    "fixed-dtype",
                    _where(error),
                    f"a constant overflows float16: {_describe(error)} (use "
                    "torch.finfo(x.dtype).min / .max instead of -1e9 / 1e9)",
                )

    # -- state-dict: round trip into a fresh instance ---------------------------------------

    def fresh_instance(self) -> nn.Module:
        if self.factory is None:
            fresh = self.copy_of(self.module)  # as given: never run by the checker
            self.recompute_non_persistent(fresh)
            return fresh
        devices = {t.device for _, _, t in _state(self.base)}
        dtypes = {t.dtype for _, _, t in _state(self.base) if t.is_floating_point()}
        factory_kwargs: dict[str, Any] = {}
        if len(devices) == 1:
            factory_kwargs["device"] = devices.pop()
        if len(dtypes) == 1:
            factory_kwargs["dtype"] = dtypes.pop()
        # Not the seed of the calls: a random initialisation must not be replayed bit for bit.
        _seed(_FRESH_SEED)
        return self.factory(**factory_kwargs)

    def state_dict_round_trip(self) -> None:
        source = self.copy_of(self.base).train()
        with torch.no_grad():
            self.call(source)  # let training-mode state (running statistics) move
        source.eval()
        with torch.no_grad():
            _seed()  # the same random numbers, if any, for both calls
            expected = self.call(source)
        state = source.state_dict()
        for key in _non_persistent_buffer_names(source):
            if key in state:
                self.add("state-dict", f"buffer '{key}'", "non-persistent, yet saved")
        buffer = io.BytesIO()
        torch.save(state, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=True)
        # A fresh instance whose saved values all differ: every saved tensor NaN.
        target = self.fresh_instance()
        with torch.no_grad():
            for tensor in target.state_dict(keep_vars=True).values():
                if (
                    isinstance(tensor, Tensor)
                    and tensor.is_floating_point()
                    and tensor.layout == torch.strided  # a sparse one has no fill_()
                    and not isinstance(tensor, nn.UninitializedParameter | nn.UninitializedBuffer)
                ):
                    tensor.fill_(math.nan)
        try:
            target.load_state_dict(loaded, strict=True)
        except Exception as error:  # noqa: BLE001 - the finding
            if any("appeared during forward()" in v.problem for v in self.violations):
                return  # state made in forward(): reported by rule state-in-forward
            self.add(
                "state-dict",
                type(self.module).__name__,
                f"load_state_dict() into a fresh instance failed: {_describe(error)} "
                "(state made or resized in forward())",
            )
            return
        target.eval()
        with torch.no_grad():
            _seed()
            actual = self.call(target)
        if not self.compares_nothing("state-dict") and not self.same(actual, expected):
            differing = [
                f"buffer '{name}'"
                for name, tensor in source.named_buffers()
                if name not in dict(target.named_buffers())
                or not self.same(tensor, target.get_buffer(name))
            ]
            self.add(
                "state-dict",
                ", ".join(differing) or type(self.module).__name__,
                "a fresh instance loaded from state_dict() gives other outputs"
                + (" (these differ after loading)" if differing else ""),
            )

    # -- eval-inference ----------------------------------------------------------------------

    def eval_inference(self) -> None:
        if self.eval_run is None:  # eval_calls() did not run: its rules were not selected
            module = self.copy_of(self.base).eval()
            generators = _random_states()
            with torch.no_grad():
                first = self.call(module)
                before = {name: t.clone() for _, name, t in _state(module)}  # after a first call
                self.eval_run = (module, before, first, self.call(module))
            self.eval_draws_random = _random_states_moved(generators)
        module, before, first, second = self.eval_run
        self.eval_run = None  # their memory is not needed after this
        if self.same(first, second) and self.eval_draws_random:
            # Random numbers drawn in eval mode that happened to give the same outputs
            # twice (a drop mask all ones): a third call from another seed tells.
            with torch.no_grad():
                _seed(12345)
                second = self.call(module)
        if self.same(first, second):
            self.eval_state_changes(module, before)
        else:
            self.eval_varies = True
            changed = [name for _, name, t in _state(module) if not self.same(t, before[name])]
            where = ", ".join(f"'{name}'" for name in changed) or self.first_difference(module)
            self.add(
                "eval-inference",
                where,
                "two eval-mode calls on the same inputs give different outputs"
                + (" (this state changed in eval mode)" if changed else ""),
            )
        graph = [i for i, t in enumerate(_output_tensors(first)) if t.requires_grad]
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
        traces: list[list[tuple[str, list[tuple[float, float]]]]] = []
        for _ in range(2):
            trace = _Trace()
            with torch.no_grad(), trace:
                self.call(module)
            traces.append(trace.calls)
        for (where, fingerprint), (_, other) in zip(traces[0], traces[1], strict=False):
            if fingerprint != other:
                return where
        return type(self.module).__name__

    # -- meta-init, factory-kwargs ------------------------------------------------------------

    def meta_init(self) -> None:
        if self.factory is None:
            return
        module = self.factory(device="meta")
        devices = {t.device for _, _, t in _state(self.base)}
        module.to_empty(device=devices.pop() if len(devices) == 1 else "cpu")
        with torch.no_grad():  # what reset_parameters() leaves alone stays NaN
            for _, _, tensor in _state(module):
                if tensor.is_floating_point() and tensor.layout == torch.strided:
                    tensor.fill_(math.nan)
        _reset_parameters(module)
        if self.init != "reset_parameters":
            getattr(module, self.init)()
        for kind, name, tensor in _state(module):
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                # torch.nn.utils.parametrize keeps the stored tensors as `original*`.
                original = ".parametrizations." in f".{name}" and ".original" in name
                self.add(
                    "meta-init",
                    f"{kind} '{name}'",
                    f"is not finite after to_empty() and {self.init}(): nothing sets it"
                    + (" (a parametrization's stored tensor)" if original else ""),
                    _ORIGINAL_FIX if original else None,
                )

    def factory_kwargs(self) -> None:
        if self.factory is None:
            return
        for factory_kwargs in ({"device": "meta"}, {"device": "meta", "dtype": torch.float64}):
            module = self.factory(**factory_kwargs)
            shown = ", ".join(f"{k}={v!r}" for k, v in factory_kwargs.items())
            self.plain_tensors_made_by_factory(module, shown)
            for kind, name, tensor in _state(module):
                dtype = factory_kwargs.get("dtype")
                if not tensor.is_meta:
                    self.add(
                        "factory-kwargs",
                        f"{kind} '{name}'",
                        f"factory({shown}) made it on {tensor.device}",
                    )
                elif dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
                    self.add(
                        "factory-kwargs",
                        f"{kind} '{name}'",
                        f"factory({shown}) made it {tensor.dtype}",
                    )

    # -- non-contiguous, pickle, repr (as in PyTorch's test_modules.py) -----------------------

    def eval_reference(self) -> Any:
        """The seeded output of a fresh eval-mode copy: one run for every probe that needs it."""
        if self.reference is None:
            self.reference_module = self.copy_of(self.base).eval()
            with torch.no_grad():
                _seed()
                self.reference = self.call(self.reference_module)
        return self.reference

    def non_contiguous(self) -> None:
        expected = self.eval_reference()
        module = self.reference_module  # it ran once, in eval mode: the same state
        assert module is not None
        # Not through self.call(): clone() would make the inputs contiguous again.
        args, kwargs = self.converted(_non_contiguous)
        with torch.no_grad():
            _seed()
            try:
                actual = module(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - the finding
                self.add(
                    "non-contiguous", _where(error), f"non-contiguous inputs: {_describe(error)}"
                )
                return
        if not self.compares_nothing("non-contiguous") and not self.same(actual, expected):
            self.add(
                "non-contiguous",
                type(self.module).__name__,
                "non-contiguous inputs give other outputs",
            )

    def pickle_round_trip(self) -> None:
        # torch.nn.utils.parametrize refuses pickling by design: state_dict() is the way.
        if any(parametrize.is_parametrized(m) for m in self.base.modules()):
            self.notes.append("pickle: not checked, the module is parametrized (torch refuses it)")
            return
        try:  # the base copy has never run: pickling it changes nothing
            unpickled = pickle.loads(pickle.dumps(self.base))
        except Exception as error:  # noqa: BLE001 - the finding
            self.add("pickle", _unpicklable(self.base), f"pickling failed: {_describe(error)}")
            return
        expected = self.eval_reference()
        with torch.no_grad():
            _seed()
            actual = self.call(unpickled.eval())
        if not self.compares_nothing("pickle") and not self.same(actual, expected):
            self.add("pickle", type(self.module).__name__, "the unpickled copy gives other outputs")

    def repr(self) -> None:
        try:
            text = repr(self.base)
        except Exception as error:  # noqa: BLE001 - the finding
            self.add("repr", _where(error), f"repr() raised {_describe(error)}")
            return
        if not text:
            self.add("repr", type(self.module).__name__, "repr() returned no text")

    # -- blind spots (issue #23): state changed in forward, plain tensors, no deepcopy --------

    def training_state_changes(self, module: nn.Module, trainable: dict[str, Tensor]) -> None:
        """After one training-mode forward(): no trainable parameter changed in place, and no
        buffer on the autograd graph (a statistic updated outside torch.no_grad())."""
        parameters = dict(module.named_parameters())
        for name, value in trainable.items():
            parameter = parameters.get(name)
            if parameter is not None and not _equal(parameter, value):
                self.add(
                    "state-in-forward",
                    f"parameter '{name}'",
                    "is changed in place by a training-mode forward() (the optimizer's "
                    "update is overwritten)",
                    _DRIFT_FIX,
                )
        for name, buffer in module.named_buffers():
            if buffer.requires_grad or buffer.grad_fn is not None:
                self.add(
                    "state-in-forward",
                    f"buffer '{name}'",
                    "is on the autograd graph after a training-mode forward() (updated "
                    "outside torch.no_grad())",
                    _GRAPH_BUFFER_FIX,
                )

    def eval_state_changes(self, module: nn.Module, before: Mapping[str, Tensor]) -> None:
        """Saved state (parameters, persistent buffers) that an eval-mode call changed.

        ``before``: the state after a first eval-mode call, so that a one-time
        initialisation on the first batch is not counted. Non-persistent buffers (caches)
        may change.
        """
        non_persistent = set(_non_persistent_buffer_names(module))
        for kind, name, tensor in _state(module):
            if name in non_persistent or name not in before or _equal(tensor, before[name]):
                continue
            self.add(
                "eval-inference",
                f"{kind} '{name}'",
                "changes with every eval-mode forward() on the same inputs, though the "
                "outputs do not (validation changes the saved state)",
                _DRIFT_FIX if kind == "parameter" else _EVAL_STATE_FIX,
            )

    def plain_tensors_made_by_factory(self, module: nn.Module, shown: str) -> None:
        """Tensor attributes that ``factory(...)`` leaves unregistered, as the module built
        without factory arguments does not (``nn.Parameter(t).to(device, dtype)``)."""
        registered = {id(t) for _, _, t in _state(module)}
        plain_in_base = {
            item_path
            for path, value in _attributes(self.base)
            for item_path, item in _walk(value, path)
            if isinstance(item, Tensor)
        }
        state_names = {name for _, name, _ in _state(self.base)}
        for path, value in _attributes(module):
            for item_path, item in _walk(value, path):
                if (
                    isinstance(item, Tensor)
                    and id(item) not in registered
                    and item_path not in plain_in_base
                ):
                    was = " (registered when built without factory arguments)"
                    self.add(
                        "factory-kwargs",
                        f"attribute '{item_path}'",
                        f"factory({shown}) left it a plain tensor on {item.device}, neither "
                        "parameter nor buffer" + (was if item_path in state_names else ""),
                        _PLAIN_AFTER_TO_FIX,
                    )

    def recompute_non_persistent(self, fresh: nn.Module) -> None:
        """Without factory=, the fresh instance is a copy: its non-persistent float buffers
        are recomputed by reset_parameters(), not carried over. Those it does not set keep
        the copy's values (said in a note): no fresh instance can be built to compare."""
        present = dict(fresh.named_buffers())
        buffers = {
            name: present[name] for name in _non_persistent_buffer_names(fresh) if name in present
        }
        floats = {
            name: buffer
            for name, buffer in buffers.items()
            if buffer.is_floating_point()
            and buffer.numel() > 0
            and not isinstance(buffer, nn.UninitializedBuffer)
        }
        if not floats:
            return
        copied = {name: buffer.clone() for name, buffer in floats.items()}
        # reset_parameters() may fail on a module built otherwise: then the copy's values stay.
        with contextlib.suppress(Exception), torch.no_grad():
            for buffer in floats.values():
                buffer.fill_(math.nan)
            _reset_parameters(fresh)
        kept = []
        with torch.no_grad():
            for name, value in copied.items():
                current = fresh.get_buffer(name)
                if current.shape == value.shape and bool(current.isnan().any()):
                    current.copy_(value)
                    kept.append(name)
        if kept:
            self.notes.append(
                "state-dict: non-persistent buffers "
                + ", ".join(f"'{name}'" for name in kept)
                + " were copied into the fresh instance: reset_parameters() does not compute "
                "them (pass factory= to check them)"
            )

    def without_copy(self) -> None:
        """copy.deepcopy(module) failed: the rules that need neither a copy nor a forward
        pass, checked on the module itself, which is left unchanged."""
        module = self.module
        self.report_registration(module, _attribute_tensors(module))
        if "pickle" in self.selected:
            try:
                pickle.dumps(module)
            except Exception as error:  # noqa: BLE001 - the finding
                self.add("pickle", _unpicklable(module), f"pickling failed: {_describe(error)}")
        if "repr" in self.selected:
            try:
                repr(module)
            except Exception as error:  # noqa: BLE001 - the finding
                self.add("repr", _where(error), f"repr() raised {_describe(error)}")
        self.notes.append(
            "only plain-container, unregistered-tensor, pickle and repr were checked: the "
            "other rules run on a copy"
        )

    # -- finite-output, batch-independence, checkpoint-parity --------------------------------

    def finite_output(self) -> None:
        inputs = [t for t in _flat_tensors(self.inputs) if t.is_floating_point()]
        if not all(bool(torch.isfinite(t).all()) for t in inputs):
            self.notes.append("finite-output: not checked, the example inputs are not finite")
            return
        output = self.eval_reference()
        for index, tensor in enumerate(_output_tensors(output)):
            if not tensor.is_floating_point() or bool(torch.isfinite(tensor).all()):
                continue
            module = self.copy_of(self.base).eval()
            nan = bool(tensor.isnan().any())
            kind = "NaN" if nan else "Inf"
            # The first torch call that made one: NaN or Inf from finite inputs.
            watch = _FirstCall(_has_nan if nan else _has_non_finite)
            with torch.no_grad(), watch:
                self.call(module)
            self.add(
                "finite-output",
                watch.where or f"output {index}",
                f"makes {kind} (output {index} holds {kind}; eval mode, finite inputs)",
            )
            return

    def batch_independence(self) -> None:
        sizes = {t.shape[0] for t in _flat_tensors(self.inputs) if t.dim() > 0}
        if len(sizes) != 1 or (size := sizes.pop()) < 2:
            return  # no batch dimension shared by every input (scalars aside)
        if any(getattr(m, "batch_first", True) is False for m in self.base.modules()):
            self.notes.append("batch-independence: not checked, a submodule is batch_first=False")
            return
        module = self.copy_of(self.base).eval()
        row = size - 1  # the last sample: padding and offsets show there
        single = _map_tensors(lambda t: t[row : row + 1] if t.dim() > 0 else t, self.inputs)
        batched = self.eval_reference()
        with torch.no_grad():
            _seed()
            try:
                alone = self.call(module, single)
            # The first dimension may not be a batch (a graph's nodes): not this rule's.
            except Exception as error:  # noqa: BLE001
                self.notes.append(
                    f"batch-independence: not checked, sample {row} alone (a batch of 1) "
                    f"raised {_describe(error)} at {_where(error)}: is dimension 0 a batch?"
                )
                return
        index = self.differing_row(batched, alone, size, row)
        if index is None:
            return
        with torch.no_grad():  # not repeatable in eval mode (random): rule eval-inference's
            if not self.same(self.call(module), batched):
                return
            trace = _RowTrace(size, row, self.rows_close)
            with trace:
                _seed()
                self.call(module)
            trace.reference, trace.rows = trace.rows, []
            with trace:
                _seed()
                self.call(module, single)
        self.add(
            "batch-independence",
            trace.where or f"output {index}",
            f"sample {row} alone gives another output {index} than in a batch of {size} "
            "(eval mode)",
        )

    def differing_row(self, batched: Any, alone: Any, size: int, row: int) -> int | None:
        """The first output whose row ``row`` differs from the single sample's, or None."""
        pairs = list(zip(_flat_tensors(batched), _flat_tensors(alone), strict=False))
        if len(_flat_tensors(batched)) != len(_flat_tensors(alone)):
            return None
        for index, (full, one) in enumerate(pairs):
            if full.dim() == 0 or full.shape[0] != size or one.shape != (1, *full.shape[1:]):
                continue
            if not self.rows_close(one, full[row : row + 1]):
                return index
        return None

    def rows_close(self, actual: Tensor, expected: Tensor) -> bool:
        """Equal up to float noise (another batch size may take another kernel)."""
        if actual.shape != expected.shape or actual.dtype != expected.dtype:
            return False
        if not actual.is_floating_point():
            return bool(torch.equal(actual, expected))
        low = actual.dtype in (torch.bfloat16, torch.half)
        rtol = self.rtol if self.rtol is not None else (1.6e-2 if low else 1e-3)
        scale = float(expected.detach().abs().nan_to_num().max()) if expected.numel() else 0.0
        atol = self.atol if self.atol is not None else rtol * max(1.0, scale)
        return bool(torch.allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True))

    def checkpoint_parity(self) -> None:
        if self.plain_step is None:  # train_calls() did not run, or its step failed
            plain = self.copy_of(self.base).train()
            with _other_random_states():
                _seed()
                _seed_other_random()
                try:
                    output = self.call(plain)
                    self.plain_step = (_snapshot(output), {})
                    scalar = self.loss(output)
                    if scalar.requires_grad:
                        scalar.backward()
                except Exception:  # noqa: BLE001 - the plain run fails: other rules say why
                    return
            self.plain_step[1].update({name: p.grad for name, p in plain.named_parameters()})
        expected, grads = self.plain_step
        finding = self.checkpointed_run(expected, grads, per_block=False)
        # Trainers checkpoint per block (torchtitan, Hugging Face), not the whole model: a
        # top-level step that is not repeatable (wav2vec2's SpecAugment draws with NumPy) is
        # no fault if every block is.
        if (
            finding is not None
            and _blocks(self.base)
            and self.checkpointed_run(expected, grads, per_block=True) is None
        ):
            self.notes.append(
                "checkpoint-parity: checkpointed as a whole, forward() is not repeatable "
                f"({finding[1]}); per block of its ModuleLists, as trainers apply it, it is"
            )
            return
        if finding is not None:
            self.add("checkpoint-parity", *finding)

    def checkpointed_run(
        self, expected: dict[str, Any], grads: dict[str, Tensor | None], per_block: bool
    ) -> tuple[str, str] | None:
        """A training step under activation checkpointing, against the plain one: None if
        the outputs and gradients are the same, else (where, what) differs."""
        checked = self.copy_of(self.base).train()
        registry = _registry(checked)
        how = "per block" if per_block else "around the whole forward()"
        with _other_random_states():
            _seed()
            _seed_other_random()
            args, kwargs = _map_tensors(torch.clone, self.inputs)
            try:
                # Buffers that forward() updates (running statistics) are recomputed from
                # their values before it: what differs then is state outside torch's view.
                with _checkpointed(checked, per_block, contextlib.nullcontext, _BuffersAsBefore):
                    output = checked(*args, **kwargs)
                # As it came out of forward(): the recomputation in backward may append to
                # a cache it holds again (Hugging Face turns its cache off for this).
                actual = _snapshot(output)
                if _registry(checked) != registry:
                    return None  # state made or replaced in forward(): state-in-forward's
                scalar = self.loss(output)
                if scalar.requires_grad:
                    scalar.backward()  # runs forward() again
            except Exception as error:  # noqa: BLE001 - the finding
                return _where(error), f"under activation checkpointing ({how}): {_describe(error)}"
        if not self.same(actual, expected):
            return type(self.module).__name__, f"checkpointed {how}, forward() gives other outputs"
        others = dict(checked.named_parameters())
        differing = []
        for name, grad in grads.items():
            other = others[name].grad if name in others else None
            if (grad is None) != (other is None) or (
                grad is not None and other is not None and not self.same(other, grad)
            ):
                differing.append(f"parameter '{name}'")
        if not differing:
            return None
        line = self.recomputed_difference(per_block)
        if line:
            return line, (
                f"forward() run again in backward (activation checkpointing {how}) computes "
                f"other values here, so {', '.join(differing[:3])} get another gradient"
            )
        return ", ".join(differing[:3]), (
            f"gets another gradient under activation checkpointing ({how}): forward() run "
            "again in backward computes other values"
        )

    def recomputed_difference(self, per_block: bool) -> str:
        """The first line whose values in checkpoint's recomputation differ from the first
        run's, or "" (a third run, made only for a finding)."""
        module = self.copy_of(self.base).train()
        first, again = _ValueTrace(), _ValueTrace()

        @contextlib.contextmanager
        def recomputation(target: nn.Module, before: dict[str, Tensor]) -> Iterator[None]:
            with _BuffersAsBefore(target, before), again:
                yield

        with _other_random_states(), contextlib.suppress(Exception):
            _seed()
            _seed_other_random()
            args, kwargs = _map_tensors(torch.clone, self.inputs)
            with _checkpointed(module, per_block, lambda: first, recomputation):
                output = module(*args, **kwargs)
            self.loss(output).backward()  # the recomputation runs here
        for (where, values), (_, other) in zip(first.calls, again.calls, strict=False):
            if len(values) != len(other) or not all(
                _equal(a, b) for a, b in zip(values, other, strict=True)
            ):
                return where
        return ""


def _uninitialised_like(tensor: Tensor) -> Tensor:
    """A new ``nn.UninitializedParameter`` / ``nn.UninitializedBuffer`` like ``tensor``."""
    kind: Any = type(tensor)  # torch's stubs omit device= and dtype=
    made: Tensor = kind(
        requires_grad=tensor.requires_grad, device=tensor.device, dtype=tensor.dtype
    )
    return made


def _blocks(module: nn.Module) -> list[nn.Module]:
    """The blocks trainers checkpoint one by one: the children of the module's outermost
    ``nn.ModuleList`` / ``nn.Sequential`` containers."""
    blocks: list[nn.Module] = []
    for submodule in module.modules():
        if isinstance(submodule, nn.ModuleList | nn.Sequential) and not any(
            _holds(block, submodule) for block in blocks
        ):
            blocks.extend(submodule.children())
    return blocks


@contextlib.contextmanager
def _checkpointed(
    module: nn.Module,
    per_block: bool,
    forward_context: Callable[[], Any],
    recompute_context: Callable[[nn.Module, dict[str, Tensor]], Any],
) -> Iterator[None]:
    """Activation checkpointing (``torch.utils.checkpoint``, non-reentrant) around the whole
    forward(), or around each block of :func:`_blocks` (torchtitan's per-layer, Hugging
    Face's ``gradient_checkpointing_enable()``). ``recompute_context(block, buffers)`` is
    entered while a block is recomputed, with its buffers' values from before it ran.
    """
    targets = _blocks(module) if per_block else [module]
    for target in targets:

        def checkpointed(*args: Any, _target: nn.Module = target, **kwargs: Any) -> Any:
            before = {name: buffer.clone() for name, buffer in _target.named_buffers()}
            return torch.utils.checkpoint.checkpoint(
                type(_target).forward,
                _target,
                *args,
                use_reentrant=False,
                context_fn=lambda: (forward_context(), recompute_context(_target, before)),
                **kwargs,
            )

        target.forward = checkpointed
    try:
        yield
    finally:
        for target in targets:
            del target.forward


def _snapshot(output: Any) -> dict[str, Any]:
    """The values an output holds now (:func:`_held_values`), tensors copied."""
    held = _held_values(output)
    return {k: v.detach().clone() if isinstance(v, Tensor) else v for k, v in held.items()}


def _holds(module: nn.Module, other: nn.Module) -> bool:
    """Whether ``other`` is inside ``module``."""
    return any(other is submodule for submodule in module.modules())


# -- torch internals: each private use in one place, with a clear message if it breaks --------


def _non_persistent_buffer_names(module: nn.Module) -> list[str]:
    """Qualified names of the non-persistent buffers (nn.Module's private set)."""
    names = []
    for path, submodule in module.named_modules():
        try:
            own = submodule._non_persistent_buffers_set
        except AttributeError as error:
            raise RuntimeError(
                f"check_module_contract reads nn.Module._non_persistent_buffers_set, which "
                f"torch {torch.__version__} does not have: update testing.py "
                "(_non_persistent_buffer_names)"
            ) from error
        names += [f"{path}.{name}" if path else name for name in own]
    return names


def _function_name(func: Any) -> str:
    """``torch.arange``, ``Tensor.to``: the name the user's code called.

    Relies on the qualified names of torch's C classes (``TensorBase``,
    ``_VariableFunctionsClass``); if they change, the raw name is shown instead.
    """
    name = str(getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func)))
    owner, _, short = name.rpartition(".")
    if owner.endswith("TensorBase"):
        return f"Tensor.{short}"
    if owner.endswith("VariableFunctionsClass"):
        return f"torch.{short}"
    return name


def _accumulated_leaf(node: Any) -> Tensor | None:
    """The leaf tensor of an AccumulateGrad autograd node (its ``variable``), else None."""
    leaf = getattr(node, "variable", None)
    return leaf if isinstance(leaf, Tensor) else None


# -- helpers ---------------------------------------------------------------------------------


def _cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []


def _seed(seed: int = 0) -> None:
    """Seed the generators that fork_rng restores, and no other (no lazy CUDA seeding)."""
    torch.default_generator.manual_seed(seed)
    for device in _cuda_devices():
        torch.cuda.default_generators[device].manual_seed(seed)


def _sum_of_outputs(output: Any) -> Tensor:
    parts = [t.sum() for t in _output_tensors(output) if t.is_floating_point() and t.requires_grad]
    return sum(parts, torch.zeros(()))


def _unpicklable(module: nn.Module) -> str:
    """The first attribute in the module tree that pickle refuses, or the module's name."""
    for path, value in _attributes(module):
        try:
            pickle.dumps(value)
        except Exception:  # noqa: BLE001 - any refusal names the attribute
            return f"attribute '{path}'"
    return type(module).__name__


def _non_contiguous(tensor: Tensor) -> Tensor:
    """The same values in memory that is not contiguous: a slice of a wider tensor.

    Each row is followed by a gap (as after ``x[..., :n]``), so that no two dimensions can
    be merged: ``view()`` across them fails, as it would on the user's sliced batch.
    """
    if tensor.dim() == 0 or tensor.numel() == 0:
        return tensor
    value = tensor.detach()
    if value.dim() == 1:
        spread = torch.repeat_interleave(value, 2)[::2]
    else:
        wider = value.new_zeros((*value.shape[:-1], value.shape[-1] + 1))
        wider[..., : value.shape[-1]] = value
        spread = wider[..., : value.shape[-1]]
    return spread.requires_grad_(tensor.requires_grad) if tensor.is_floating_point() else spread


def _map_tensors(fn: Callable[[Tensor], Tensor], value: Any, depth: int = 0) -> Any:
    if isinstance(value, Tensor):
        return fn(value)
    if depth >= 8:
        return value
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return type(value)(*(_map_tensors(fn, v, depth + 1) for v in value))
    if isinstance(value, list | tuple):
        return type(value)(_map_tensors(fn, v, depth + 1) for v in value)
    if isinstance(value, dict):
        return {k: _map_tensors(fn, v, depth + 1) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: _map_tensors(fn, getattr(value, f.name), depth + 1)
            for f in dataclasses.fields(value)
            if f.init
        }
        return dataclasses.replace(value, **changes)
    return value


def _flat_tensors(value: Any, depth: int = 0) -> list[Tensor]:
    """The tensors in ``value``, looking into tuples, lists, dicts and dataclasses."""
    if isinstance(value, Tensor):
        return [value]
    if depth >= 8:
        return []
    if isinstance(value, dict):
        value = list(value.values())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = [getattr(value, f.name) for f in dataclasses.fields(value)]
    if isinstance(value, list | tuple):
        return [t for item in value for t in _flat_tensors(item, depth + 1)]
    return []


_PLAIN_VALUES = (int, float, complex, str, bytes, bool, type(None), torch.dtype, torch.device)


def _held_values(value: Any, path: str = "output", depth: int = 0) -> dict[str, Any]:
    """What an output holds, by path: tensors, and the plain values beside them.

    Looks into tuples, lists, dicts (``ModelOutput`` too), NamedTuples, dataclasses and
    the attributes of other objects (a key-value cache), so that two outputs compare by
    their tensors. Modules, classes and functions are not looked into: a leaf that holds
    no tensor is returned as it is, for :meth:`_Checker.same_value` to note.
    """
    if isinstance(value, (Tensor, *_PLAIN_VALUES)) or depth >= 8:
        return {path: value}
    items: Iterator[tuple[str, Any]]
    if isinstance(value, Mapping):
        items = ((f"{path}[{key!r}]", item) for key, item in value.items())
    elif isinstance(value, list | tuple):
        fields = getattr(value, "_fields", None)  # a NamedTuple
        names = [f".{name}" for name in fields] if fields else [f"[{i}]" for i in range(len(value))]
        items = ((path + name, item) for name, item in zip(names, value, strict=True))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = ((f"{path}.{f.name}", getattr(value, f.name)) for f in dataclasses.fields(value))
    elif (
        hasattr(value, "__dict__")
        and not isinstance(value, nn.Module | type)
        and not callable(value)
    ):
        items = ((f"{path}.{name}", item) for name, item in vars(value).items())
    else:
        return {path: value}
    held: dict[str, Any] = {}
    for item_path, item in items:
        held.update(_held_values(item, item_path, depth + 1))
    return held


def _output_tensors(output: Any) -> list[Tensor]:
    """The tensors an output holds (:func:`_held_values`), in order."""
    return [value for value in _held_values(output).values() if isinstance(value, Tensor)]


def _one_sample(inputs: tuple[tuple[Any, ...], dict[str, Any]]) -> Any:
    """The first sample of a batch: every tensor input cut to ``[:1]``, if they all share a
    first dimension of 2 or more (else the inputs as they are)."""
    sizes = {t.shape[0] if t.dim() else 0 for t in _flat_tensors(inputs)}
    if len(sizes) != 1 or sizes.pop() < 2:
        return inputs
    return _map_tensors(lambda t: t[:1], inputs)


def _attribute_tensors(module: nn.Module) -> set[int]:
    """Identities of the tensors reachable from the module tree's plain attributes."""
    return {
        id(item)
        for path, value in _attributes(module)
        for _, item in _walk(value, path)
        if isinstance(item, Tensor)
    }


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


def _walk(
    value: Any, path: str, depth: int = 0, seen: set[int] | None = None
) -> Iterator[tuple[str, Any]]:
    """``value`` and what it holds: plain containers, dataclasses and plain objects' fields.

    A few levels and 1000 items deep per level; each container or object once (cycles).
    """
    yield path, value
    if depth >= 4:
        return
    if isinstance(value, _CONTAINERS):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        named = ((f"{path}[{key!r}]", item) for key, item in items)
    else:
        fields = _object_fields(value)
        if not fields:
            return
        named = ((f"{path}.{name}", item) for name, item in fields)
    seen = set() if seen is None else seen
    if id(value) in seen:
        return
    seen.add(id(value))
    for item_path, item in itertools.islice(named, 1000):
        yield from _walk(item, item_path, depth + 1, seen)


def _object_fields(value: Any) -> list[tuple[str, Any]]:
    """The fields of a dataclass instance or of a plain object (its __dict__), else none.

    Modules, tensors, classes, functions and objects of torch or of Python itself are
    not looked into.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [(f.name, getattr(value, f.name, None)) for f in dataclasses.fields(value)]
    if isinstance(value, _OPAQUE):
        return []
    owner = type(value).__module__ or ""
    if owner in ("builtins", "enum") or owner.partition(".")[0] == "torch":
        return []
    try:
        attributes = vars(value)
    except Exception:  # noqa: BLE001 - no __dict__, or one that cannot be read
        return []
    return list(attributes.items()) if isinstance(attributes, dict) else []


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


def _storage(tensor: Tensor) -> tuple[str, int]:
    """Where a strided tensor's memory is: tensors that share it are views of each other."""
    return str(tensor.device), tensor.untyped_storage().data_ptr()


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
        leaf = _accumulated_leaf(node)
        if leaf is not None:
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


def _kept_wider(module: nn.Module, name: str, tensor: Tensor, wanted: torch.dtype) -> bool:
    """A non-persistent buffer that its module's own ``_apply()`` keeps in a wider float dtype.

    timm keeps rotary bands and grid positions at least float32 after ``.to(bfloat16)``:
    they follow the device, are never saved, and are cast where they are used.
    """
    path, _, short = name.rpartition(".")
    owner = module.get_submodule(path)
    return (
        type(owner)._apply is not nn.Module._apply
        and short in getattr(owner, "_non_persistent_buffers_set", ())
        and tensor.is_floating_point()
        and wanted.is_floating_point
        and torch.finfo(tensor.dtype).bits > torch.finfo(wanted).bits
    )


def _inert(module: nn.Module) -> bool:
    """A module that loses nothing outside nn.Module's registry (transformers' kernel wrappers).

    It holds no parameter or buffer, and no forward() in it reads ``self.training`` (as
    ``nn.Dropout``'s does): ``.to()``, ``state_dict()`` and ``eval()`` have nothing to reach.
    """
    if next(itertools.chain(module.parameters(), module.buffers()), None) is not None:
        return False
    for submodule in module.modules():
        try:
            source = inspect.getsource(type(submodule).forward)
        except _NO_SOURCE:  # no source to read: assume it does
            return False
        if "training" in source:
            return False
    return True


def _package_dirs(module: nn.Module) -> tuple[str, ...]:
    """The folder of the top-level package of ``module``'s class, if it is installed."""
    top = type(module).__module__.partition(".")[0]
    package = sys.modules.get(top)
    paths = list(getattr(package, "__path__", []) or [])
    return tuple(str(Path(path)) + os.sep for path in paths)


def _is_library(filename: str) -> bool:
    """Code of torch, of the standard library, of an installed library or of this module.

    The package of the module under test counts as the user's even when it is installed.
    """
    if filename == __file__ or filename.startswith((_TORCH_DIR, "<")):
        return True
    # This interpreter's site-packages, or any other one (pip --target, a venv's on
    # PYTHONPATH, Debian's dist-packages).
    installed = filename.startswith(_SITE_DIRS) or not _INSTALLED_DIRS.isdisjoint(
        Path(filename).parts
    )
    if installed:
        return not (_user_dirs and filename.startswith(_user_dirs))
    return filename.startswith(_STDLIB_DIR)


def _format_frame(filename: str, lineno: int | None, line: str | None, function: str) -> str:
    with contextlib.suppress(ValueError):  # outside the working directory: keep it whole
        filename = str(Path(filename).resolve().relative_to(Path.cwd()))
    return f"{filename}:{lineno} in {function}() `{(line or '').strip()}`"


def _user_frame(frames: list[traceback.FrameSummary]) -> str | None:
    """The innermost frame of the user's code, formatted; None if there is none."""
    for frame in reversed(frames):
        if not _is_library(frame.filename):
            return _format_frame(frame.filename, frame.lineno, frame.line, frame.name)
    return None


def _caller() -> str:
    """Where the user's code (outside torch, libraries and this module) is now."""
    return _user_frame(traceback.extract_stack()) or "inside torch"


def _direct_caller_is_user(func: Any) -> bool:
    """Whether the torch call being watched was made by the user's code itself.

    Skips this module, torch.overrides and the Python frame of ``func`` itself (a torch
    function written in Python, such as ``F.softmax``, dispatches from inside itself).
    """
    own_name = getattr(func, "__name__", "")
    for frame in reversed(traceback.extract_stack()[:-1]):
        if frame.filename == __file__ or frame.filename.endswith(("overrides.py",)):
            continue
        if frame.filename.startswith(_TORCH_DIR):
            if frame.name == own_name:
                own_name = ""  # once: the function itself
                continue
            return False
        return not _is_library(frame.filename)
    return False


def _where(error: BaseException) -> str:
    """The innermost line of the user's code in an exception's traceback."""
    return _user_frame(traceback.extract_tb(error.__traceback__)) or "forward()"


def _describe(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    message = lines[0] if lines else ""
    if len(message) > 200:  # torch's dispatcher errors list every backend on one line
        message = message[:200].rstrip() + " ..."
    return f"{type(error).__name__}: {message}"


def _fingerprint(tensor: Tensor) -> tuple[float, float]:
    """The sum of the values, and a sum weighted by position (a permutation changes it)."""
    values = tensor.detach()
    values = torch.nan_to_num((values.abs() if values.is_complex() else values).double()).flatten()
    weights = torch.linspace(1.0, 2.0, values.numel(), dtype=values.dtype, device=values.device)
    return float(values.sum()), float((values * weights).sum())


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


def _to_meta(func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """Run a call that named a fixed device with ``meta`` instead, so the run goes on."""
    name = getattr(func, "__name__", "")
    if name in {"cpu", "cuda", "mps", "xpu"}:
        return args[0]
    meta = torch.device("meta")
    args = tuple(meta if isinstance(a, str | torch.device) and name == "to" else a for a in args)
    kwargs = {k: (meta if k == "device" and v is not None else v) for k, v in kwargs.items()}
    return func(*args, **kwargs)


class _CudaQuestion:
    """``torch.cuda.is_available`` while the meta run goes: counts the user's questions.

    ``answer=None`` gives torch's own answer; ``True`` pretends a GPU, to the user's code
    only (torch's own code still gets the truth).
    """

    def __init__(self, answer: bool | None) -> None:
        self.answer = answer
        self.calls = 0
        self.truth = torch.cuda.is_available

    def __call__(self) -> bool:
        frame = sys._getframe(1)  # the caller: a CPython frame
        if _is_library(frame.f_code.co_filename):
            return self.truth()
        self.calls += 1
        return self.truth() if self.answer is None else self.answer


class _CreationWatch(TorchFunctionMode):
    """Finds the lines that make "off" tensors (here: not on meta) during forward().

    A torch call is reported when ``fixed`` finds a fixed argument in it (``device="cpu"``,
    ``.cuda()``: checked before the call, which then runs on meta), when it receives an
    off tensor that is neither an input nor state of the module (a global), or when it
    returns an off tensor without receiving one (it made it: a factory function). Calls
    that only pass an off tensor along are not reported: the line that made it is.
    """

    def __init__(
        self,
        off: Callable[[Tensor], bool],
        known: set[int],
        fixed: Callable[[Callable[..., Any], tuple[Any, ...], Mapping[str, Any]], str | None],
        redirect: bool = False,
    ) -> None:
        super().__init__()
        self.off = off
        self.known = known
        self.fixed = fixed
        self.redirect = redirect
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
        if fixed is not None and _direct_caller_is_user(func):
            self.found.setdefault(_caller(), f"{name}() called with {fixed}")
        elif foreign:
            problem = f"{name}() received a {_describe_tensor(foreign[0])}"
            self.found.setdefault(_caller(), problem + " that is neither input nor state")
        if fixed is not None and self.redirect:
            result = _to_meta(func, args, kwargs)
        else:
            result = func(*args, **kwargs)
        returned = [t for t in _flat_tensors(result) if self.off(t)]
        if returned and not received and fixed is None:
            self.found.setdefault(_caller(), f"{name}() made a {_describe_tensor(returned[0])}")
            if self.redirect:  # reported: go on with it on meta, to check the next lines
                return _map_tensors(lambda t: t.to("meta") if self.off(t) else t, result)
        self.made.extend(returned)
        return result


class _DeviceArguments(TorchFunctionMode):
    """On the real device: torch calls of the user's code that name or imply a device.

    A device given as a string or a number, ``.cpu()`` / ``.cuda()``, or a torch function
    that receives no tensor, makes one of more than zero dimensions and has no
    ``device=``: each would put a tensor on a fixed device.
    """

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, str] = {}

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Collection[type],
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if not _direct_caller_is_user(func):
            return result
        name = _function_name(func)
        short = getattr(func, "__name__", "")
        device = kwargs.get("device")
        strings = [a for a in args if isinstance(a, str | int) and short == "to"]
        if short in {"cpu", "cuda", "mps", "xpu"}:
            self.found.setdefault(_caller(), f"{name}() moves to a fixed device")
        elif isinstance(device, str | int) or any(isinstance(a, str) for a in strings):
            shown = device if device is not None else strings[0]
            self.found.setdefault(_caller(), f"{name}() called with device={shown!r}")
        elif (
            name.startswith("torch.")
            and device is None
            and not _flat_tensors((args, kwargs))
            and any(t.dim() > 0 for t in _flat_tensors(result))
        ):
            self.found.setdefault(
                _caller(), f"{name}() made a tensor on the default device (no device=)"
            )
        return result


class _DtypeWatch(TorchFunctionMode):
    """Where each float tensor of another dtype than the module's was made.

    A tensor is "off" when it is floating point, has dimensions, and is not ``dtype``.
    Each off tensor remembers the lines that made it: the line of a call that made it from
    no off tensor (a factory, a cast), or the lines of the off tensors it was computed
    from. An off tensor of the module's state (it did not follow ``.to()``) has no line.
    A float32 step cast back before the output (RMSNorm, a softmax in float32) leaves
    nothing off, so nothing is reported. ``failed`` describes a call that raised: its
    name, its off inputs, and their lines.
    """

    def __init__(self, dtype: torch.dtype, known: set[int]) -> None:
        super().__init__()
        self.dtype = dtype
        self.known = known
        self.made: list[Tensor] = []  # kept alive, so that identities stay unique
        self.origin: dict[int, tuple[str, ...]] = {}
        self.failed: tuple[str, list[Tensor], tuple[str, ...]] | None = None

    def off(self, tensor: Tensor) -> bool:
        return tensor.dim() > 0 and tensor.is_floating_point() and tensor.dtype != self.dtype

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Collection[type],
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        off = [t for t in _flat_tensors((args, kwargs)) if self.off(t)]
        for tensor in off:
            if id(tensor) not in self.origin and id(tensor) not in self.known:
                self.origin[id(tensor)] = (_caller(),)  # a global, first seen here
                self.made.append(tensor)
        # Off state of the module (inputs, attributes) is rule follows-to's or
        # unregistered-tensor's: only tensors made while it runs have lines.
        lines = tuple(dict.fromkeys(line for t in off for line in self.origin.get(id(t), ())))
        try:
            result = func(*args, **kwargs)
        except Exception:
            if self.failed is None:
                self.failed = (_function_name(func), off, lines)
            raise
        for tensor in _flat_tensors(result):
            if self.off(tensor) and id(tensor) not in self.origin:
                # Computed from off tensors: their lines; from off state: none; else here.
                self.origin[id(tensor)] = lines if off else (_caller(),)
                self.made.append(tensor)
        return result


class _GradientCut(TorchFunctionMode):
    """Follows the values of starved parameters to the first call that drops their gradient.

    A tensor computed from a parameter (its values, whatever autograd says) carries that
    parameter's name. A call that receives such a tensor with a gradient history and
    returns none (``detach()``, an op run under ``no_grad``, ``argmax()``, ``numpy()``)
    cut it: ``cuts`` maps the parameter to that call's line and what it did.
    """

    _LEAVES_TORCH = frozenset({"numpy", "tolist", "item", "__float__", "__int__", "__bool__"})

    def __init__(self, parameters: Mapping[str, Tensor], starved: list[str]) -> None:
        super().__init__()
        self.names: dict[int, frozenset[str]] = {id(parameters[n]): frozenset({n}) for n in starved}
        self.kept: list[Any] = list(parameters.values())  # identities stay unique
        self.cuts: dict[str, tuple[str, str]] = {}

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Collection[type],
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        inputs = _flat_tensors((args, kwargs))
        carried = frozenset().union(*(self.names.get(id(t), frozenset()) for t in inputs))
        result = func(*args, **kwargs)
        if not carried:
            return result
        short = getattr(func, "__name__", "")
        outputs = _flat_tensors(result)
        if short.endswith("_") or short == "__setitem__":  # in place: the target carries
            outputs.append(args[0])
        for tensor in outputs:
            self.names[id(tensor)] = self.names.get(id(tensor), frozenset()) | carried
            self.kept.append(tensor)
        with_history = frozenset().union(
            *(self.names.get(id(t), frozenset()) for t in inputs if t.requires_grad)
        )
        cut = with_history and not any(t.requires_grad for t in outputs)
        if cut and (outputs or short in self._LEAVES_TORCH):
            where, how = _caller(), self.describe(func, short, outputs)
            function = None if torch.is_grad_enabled() else _custom_function()
            if function is not None:  # its forward() runs without autograd, by design
                where = _backward_return(function)
                how = (
                    f"{function.__name__}.backward() returns no gradient for the input its "
                    "forward() computes from this parameter"
                )
            for name in with_history:
                self.cuts.setdefault(name, (where, how))
        return result

    @staticmethod
    def describe(func: Callable[..., Any], short: str, outputs: list[Tensor]) -> str:
        name = _function_name(func)
        if not torch.is_grad_enabled():
            return (
                f"{name}() runs with autograd off (under torch.no_grad(), in a re-entrant "
                "checkpoint, or in a custom autograd.Function's forward())"
            )
        if short.startswith("detach"):
            return f"{name}() cuts the autograd graph"
        if not outputs:
            return f"{name}() leaves torch: autograd cannot follow a NumPy or Python value"
        if not any(t.is_floating_point() or t.is_complex() for t in outputs):
            return f"{name}() returns integers or booleans, through which no gradient flows"
        return f"{name}() returns a tensor without gradient history"


def _custom_function() -> type[torch.autograd.Function] | None:
    """The user's custom ``autograd.Function`` whose ``forward()`` runs now, if any (not a
    library's, such as torch's re-entrant checkpoint)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        context = frame.f_locals.get("ctx")
        if frame.f_code.co_name == "forward" and isinstance(
            context, torch.autograd.function.BackwardCFunction
        ):
            function: type[torch.autograd.Function] | None = getattr(context, "_forward_cls", None)
            filename = inspect.getsourcefile(function) if function is not None else None
            return None if filename is None or _is_library(filename) else function
        frame = frame.f_back
    return None


def _backward_return(function: type[torch.autograd.Function]) -> str:
    """The line of a custom Function's ``backward()`` that returns a None gradient (else its
    last ``return``), formatted as a line of the user's code."""
    backward = function.backward
    try:
        lines, first = inspect.getsourcelines(backward)
        filename = inspect.getsourcefile(backward) or "?"
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except _NO_SOURCE:
        return getattr(backward, "__qualname__", repr(backward))
    returns = [node for node in ast.walk(tree) if isinstance(node, ast.Return)]
    with_none = [
        node
        for node in returns
        if isinstance(node.value, ast.Tuple)
        and any(isinstance(e, ast.Constant) and e.value is None for e in node.value.elts)
    ]
    chosen = with_none or returns
    offset = chosen[-1].lineno - 1 if chosen else 0
    return _format_frame(filename, first + offset, lines[offset], "backward")


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
        self.calls: list[tuple[str, list[tuple[float, float]]]] = []

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Collection[type],
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        result = func(*args, **(kwargs or {}))
        tensors = _flat_tensors(result)
        # empty(), empty_like(), new_empty(): memory as found, different every call.
        if tensors and not getattr(func, "__name__", "").removeprefix("new_").startswith("empty"):
            fingerprint = [_fingerprint(t) for t in tensors]
            self.calls.append((_caller(), fingerprint))
        return result


class _LocalNames:
    """Records the local variable names of leaf tensors that require grad in user frames.

    While active (one forward() call), a profile function looks at each frame of code
    outside torch as it returns, so that a parameter made as a local variable in forward()
    (or the parameters of a module made there) can be reported by name.
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
        function = frame.f_code.co_name
        for name, value in frame.f_locals.items():
            if isinstance(value, Tensor) and value.requires_grad and value.grad_fn is None:
                self.names.append((weakref.ref(value), f"local '{name}' in {function}()"))
            elif isinstance(value, nn.Module) and name != "self":
                where = f"local {type(value).__name__} '{name}' in {function}()"
                for parameter in value.parameters():
                    self.names.append((weakref.ref(parameter), where))

    @staticmethod
    def is_module(where: str) -> bool:
        """Whether a name from :meth:`name_of` is that of a module made in forward()."""
        return where.startswith("local ") and not where.startswith("local '")

    def name_of(self, tensor: Tensor) -> str | None:
        for ref, name in self.names:
            if ref() is tensor:
                return name
        return None


# -- blind spots (issue #23): helpers ---------------------------------------------------------


def _trainable_values(module: nn.Module) -> dict[str, Tensor]:
    """A copy of every trainable parameter's values, to see what forward() changes in place.

    nn.Embedding(max_norm=...) renormalises its weight in forward() by design: left out.
    """
    renormed = {
        id(m.weight)
        for m in module.modules()
        if isinstance(m, nn.Embedding | nn.EmbeddingBag) and m.max_norm is not None
    }
    return {
        name: parameter.detach().clone()
        for name, parameter in module.named_parameters()
        if parameter.requires_grad
        and id(parameter) not in renormed
        and not isinstance(parameter, nn.UninitializedParameter)
    }


def _equal(actual: Tensor, expected: Tensor) -> bool:
    """Same shape, dtype and values (NaN equal to NaN); True where they cannot be compared."""
    if actual.shape != expected.shape or actual.dtype != expected.dtype:
        return False
    try:
        if torch.equal(actual, expected):
            return True
        if not actual.is_floating_point():
            return False
        nan = actual.isnan()
        return bool(
            torch.equal(nan, expected.isnan()) and torch.equal(actual[~nan], expected[~nan])
        )
    except Exception:  # noqa: BLE001 - sparse or meta: nothing to compare
        return True


def _uncopyable(module: nn.Module) -> tuple[str, str]:
    """The first attribute that copy.deepcopy refuses, and why; else the module's name."""
    for path, value in _attributes(module):
        try:
            copy.deepcopy(value)
        except Exception as error:  # noqa: BLE001 - any refusal names the attribute
            return (
                f"attribute '{path}'",
                f"attribute '{path}' cannot be copied ({_describe(error)})",
            )
    return type(module).__name__, ""


def _generator_names(module: nn.Module) -> dict[int, str]:
    """The torch.Generator objects the module holds, by identity, with their attribute."""
    return {
        id(item): f"attribute '{item_path}'"
        for path, value in _attributes(module)
        for item_path, item in _walk(value, path)
        if isinstance(item, torch.Generator)
    }


@contextlib.contextmanager
def _other_random_states() -> Iterator[None]:
    """Restores Python's and NumPy's global random states (torch's: fork_rng) afterwards."""
    state = random.getstate()
    numpy = sys.modules.get("numpy")
    numpy_state = numpy.random.get_state() if numpy is not None else None
    try:
        yield
    finally:
        random.setstate(state)
        if numpy is not None:
            numpy.random.set_state(numpy_state)


def _random_states() -> list[Tensor]:
    """The states of torch's default generators (CPU, and the GPUs if CUDA is in use)."""
    states = [torch.default_generator.get_state()]
    return states + [torch.cuda.default_generators[i].get_state() for i in _cuda_devices()]


def _random_states_moved(before: list[Tensor]) -> bool:
    """Whether torch's generators drew numbers since their states were ``before``."""
    after = _random_states()
    return len(after) != len(before) or not all(
        torch.equal(a, b) for a, b in zip(before, after, strict=True)
    )


def _seed_other_random() -> None:
    """Seed Python's and NumPy's global generators (inside _other_random_states)."""
    random.seed(0)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(0)


# What the user's code reads of a tensor's device (torch's C getters and method).
_DEVICE_GETTERS = {
    name: torch._C.TensorBase.__dict__[name] for name in ("device", "is_cuda", "is_cpu", "is_meta")
}
_PRETEND = torch.device("cuda", 1)  # a GPU that is not the current one
_META = torch.device("meta")


def _device_read(func: Any) -> str:
    """Which device property ``func`` reads ("device", "is_cuda", ...), or ""."""
    owner = getattr(func, "__self__", None)
    for name, getter in _DEVICE_GETTERS.items():
        if owner is getter:
            return name
    return "get_device" if func is torch._C.TensorBase.get_device else ""


def _pretended(read: str) -> Any:
    """What the user's code is told about a meta tensor, as if it were on cuda:1."""
    return {
        "device": _PRETEND,
        "is_cuda": True,
        "is_cpu": False,
        "is_meta": False,
        "get_device": _PRETEND.index,
    }[read]


def _unpretend(value: Any) -> Any:
    """cuda:1, the device the user's code was told of, given back: run it on meta."""
    if isinstance(value, str | torch.device):
        with contextlib.suppress(RuntimeError):
            if torch.device(value) == _PRETEND:
                return _META
    return value


class _MetaWatch(_CreationWatch):
    """The meta run's watch: :class:`_CreationWatch`, plus devices read and generators.

    The user's code reading a meta tensor's device (``x.device``, ``x.is_cuda``,
    ``x.get_device()``) counts as a question in ``question.calls``, so that the run is
    repeated as if on a GPU. In that run (``question.answer`` True) the user's code is told
    that its tensors are on cuda:1, a GPU that is not the current one, and cuda:1 given
    back runs on meta: a device taken from the inputs passes; ``x.device.type``,
    ``"cuda"`` and ``.cuda()`` (the current GPU) are fixed devices. A torch.Generator on
    another device than the tensors it draws for is reported too.
    """

    def __init__(
        self, known: set[int], question: _CudaQuestion, generators: dict[int, str]
    ) -> None:
        super().__init__(
            lambda t: t.dim() > 0 and not t.is_meta, known=known, fixed=_fixed_device, redirect=True
        )
        self.question = question
        self.generators = generators
        self.fixes: dict[str, str] = {}

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Collection[type],
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = dict(kwargs or {})
        read = _device_read(func)
        if read:
            value = func(*args, **kwargs)
            meta = bool(args) and isinstance(args[0], Tensor) and args[0].is_meta
            if meta and not _is_library(sys._getframe(1).f_code.co_filename):
                self.question.calls += 1
                if self.question.answer:
                    return _pretended(read)
            return value
        if self.question.answer:
            if "device" in kwargs:
                kwargs["device"] = _unpretend(kwargs["device"])
            args = tuple(_unpretend(a) for a in args)
        else:
            self.check_generators(func, args, kwargs)
        found = set(self.found)
        result = super().__torch_function__(func, types, args, kwargs)
        if self.question.answer:
            for where in self.found.keys() - found:
                self.fixes.setdefault(where, _DEVICE_PROPERTY_FIX)
        return result

    def check_generators(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> None:
        generators = [v for v in (*args, *kwargs.values()) if isinstance(v, torch.Generator)]
        if not generators:
            return
        device = kwargs.get("device")
        if device is not None:
            target = torch.device(device).type == "meta"
        else:
            target = any(t.is_meta for t in _flat_tensors((args, kwargs)))
        for generator in generators:
            if target and generator.device.type != "meta" and _direct_caller_is_user(func):
                held = self.generators.get(id(generator))
                where = _caller()
                self.found.setdefault(
                    where,
                    f"{_function_name(func)}() draws from a torch.Generator on "
                    f"{generator.device}{f' ({held})' if held else ''} for a tensor on the "
                    "input's device",
                )
                self.fixes.setdefault(where, _GENERATOR_FIX)


def _autocast_site() -> str | None:
    """The user's line that entered a torch.autocast (a ``with``, or a decorator)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and (
        frame.f_code.co_filename == __file__ or frame.f_code.co_filename.startswith(_TORCH_DIR)
    ):
        if frame.f_code.co_name == "decorate_autocast":  # @torch.autocast(...) on a function
            code = getattr(frame.f_locals.get("func"), "__code__", None)
            if code is None or _is_library(code.co_filename):
                return None
            line = linecache.getline(code.co_filename, code.co_firstlineno)
            return _format_frame(code.co_filename, code.co_firstlineno, line, code.co_name)
        frame = frame.f_back
    if frame is None or _is_library(frame.f_code.co_filename):
        return None
    filename, lineno = frame.f_code.co_filename, frame.f_lineno
    return _format_frame(
        filename, lineno, linecache.getline(filename, lineno), frame.f_code.co_name
    )


class _AutocastWatch:
    """While a meta run goes: torch.autocast entered by the user's code with another device
    type than its inputs' (``expected``) is reported into ``watch``.

    Each autocast made meanwhile is a disabled CPU one: meta has no autocast state
    (``torch.autocast("meta")`` raises), and the run only follows devices.
    """

    def __init__(self, expected: str, watch: _MetaWatch) -> None:
        self.expected = expected
        self.watch = watch
        self.patches = contextlib.ExitStack()

    def __enter__(self) -> None:
        autocast = torch.amp.autocast_mode.autocast
        init, enter = autocast.__init__, autocast.__enter__
        expected, watch = self.expected, self.watch

        def patched_init(self: Any, device_type: str, *_args: Any, **_kwargs: Any) -> None:
            init(self, "cpu", enabled=False)
            self.contract_device_type = device_type

        def patched_enter(self: Any) -> Any:
            device_type = getattr(self, "contract_device_type", self.device)
            where = _autocast_site() if device_type != expected else None
            if where is not None:
                watch.found.setdefault(
                    where,
                    f"torch.autocast({device_type!r}) entered for tensors on the input's device",
                )
                watch.fixes.setdefault(where, _AUTOCAST_FIX)
            return enter(self)  # type: ignore[no-untyped-call]

        self.patches.enter_context(mock.patch.object(autocast, "__init__", patched_init))
        self.patches.enter_context(mock.patch.object(autocast, "__enter__", patched_enter))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.patches.close()


class _RowTrace(TorchFunctionMode):
    """Where a sample alone first parts from its row in the batch.

    First run (the batch): keeps row ``row`` of every batch-sized tensor each torch call
    returns. Second run (the sample alone, ``reference`` set): the first call whose result
    differs from the kept row gives ``where``.
    """

    def __init__(self, size: int, row: int, close: Callable[[Tensor, Tensor], bool]) -> None:
        super().__init__()
        self.size = size
        self.row = row
        self.close = close
        self.rows: list[list[Tensor | None]] = []
        self.reference: list[list[Tensor | None]] | None = None
        self.where = ""

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Collection[type],
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        result = func(*args, **(kwargs or {}))
        tensors = _flat_tensors(result)
        if self.reference is None:
            self.rows.append(
                [
                    t[self.row : self.row + 1].detach().clone()
                    if t.dim() > 0 and t.shape[0] == self.size
                    else None
                    for t in tensors
                ]
            )
            return result
        index = len(self.rows)
        self.rows.append([])
        if self.where or index >= len(self.reference):
            return result
        for kept, tensor in zip(self.reference[index], tensors, strict=False):
            if kept is not None and tensor.shape == kept.shape and not self.close(tensor, kept):
                self.where = _caller()
                break
        return result


def _has_nan(tensor: Tensor) -> bool:
    return tensor.is_floating_point() and bool(tensor.isnan().any())


def _has_non_finite(tensor: Tensor) -> bool:
    return tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())


class _BuffersAsBefore:
    """While checkpoint recomputes forward(): the buffers hold their values from before the
    first run, as it saw them; afterwards, their values again."""

    def __init__(self, module: nn.Module, before: Mapping[str, Tensor]) -> None:
        self.module = module
        self.before = before
        self.after: dict[str, Tensor] = {}

    def __enter__(self) -> None:
        with torch.no_grad():
            for name, buffer in self.module.named_buffers():
                value = self.before.get(name)
                if value is not None and value.shape == buffer.shape:
                    self.after[name] = buffer.clone()
                    buffer.copy_(value)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with torch.no_grad():
            for name, buffer in self.module.named_buffers():
                if name in self.after:
                    buffer.copy_(self.after[name])


class _ValueTrace(TorchFunctionMode):
    """(line, a copy of the float tensors returned or written) of every torch call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, list[Tensor]]] = []

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Collection[type],
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        result = func(*args, **(kwargs or {}))
        # x[mask] = value returns nothing: what it wrote is its first argument.
        changed = result if result is not None else args[:1]
        values = [t.detach().clone() for t in _flat_tensors(changed) if t.is_floating_point()]
        if values:
            self.calls.append((_caller(), values))
        return result
