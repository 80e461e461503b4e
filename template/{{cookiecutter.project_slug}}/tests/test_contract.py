"""The nn.Module contract: the layer, the model, torch.nn's own layers and the broken zoo.

Also what the contract promises: exact gradients (gradcheck), torch.compile,
DistributedDataParallel on two processes, device moves and autocast.
"""

from __future__ import annotations

import multiprocessing
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

import broken_modules
import correct_modules
from {{ cookiecutter.package_name }} import testing
from {{ cookiecutter.package_name }}.layers import {{ cookiecutter.layer_class }}
from {{ cookiecutter.package_name }}.model import Model, ModelConfig
from {{ cookiecutter.package_name }}.testing import RULES, ModuleContractError, check_module_contract

Layer = {{ cookiecutter.layer_class }}  # the layer under test
SMALL = ModelConfig(in_features=6, hidden_features=8, num_layers=2, num_classes=3)


def layer_factory(bias: bool = True) -> Callable[..., nn.Module]:
    """``factory(device=..., dtype=...)``: how the checker builds a fresh layer."""

    def factory(**factory_kwargs: Any) -> nn.Module:
        return Layer(5, 3, bias=bias, **factory_kwargs)

    return factory


def model_factory(**factory_kwargs: Any) -> nn.Module:
    return Model(SMALL, **factory_kwargs)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("bias", [True, False])
def test_layer_keeps_the_contract(bias: bool, rule: str) -> None:
    factory = layer_factory(bias)
    check_module_contract(factory(), torch.randn(2, 4, 5), factory=factory, rules=[rule])


@pytest.mark.parametrize("rule", RULES)
def test_model_keeps_the_contract(rule: str) -> None:
    x = torch.randn(8, SMALL.in_features)
    check_module_contract(model_factory(), x, factory=model_factory, rules=[rule])


def test_model_with_activation_checkpointing_keeps_the_contract() -> None:
    model = Model(SMALL)
    model.activation_checkpointing = True  # forward takes torch.utils.checkpoint's path
    check_module_contract(model, torch.randn(8, SMALL.in_features), factory=model_factory)


@pytest.mark.parametrize("case", broken_modules.CASES, ids=lambda case: case.id)
def test_checker_catches_each_broken_module(case: broken_modules.Case) -> None:
    with pytest.raises(ModuleContractError) as caught:
        check_module_contract(case.module(), *case.inputs, **case.options)
    error = caught.value
    assert error.rules == {case.rule} | case.also, str(error)
    reports = [f"{v.where}: {v.problem}" for v in error.violations if v.rule == case.rule]
    assert any(case.names in r and case.says in r for r in reports), str(error)


@pytest.mark.parametrize("idiom", correct_modules.IDIOMS, ids=lambda idiom: idiom.name)
def test_checker_accepts_each_modern_idiom_without_a_skip(idiom: correct_modules.Idiom) -> None:
    factory = idiom.factory if idiom.takes_factory_kwargs else None
    report = check_module_contract(
        idiom.build(), *idiom.inputs(), kwargs=idiom.kwargs(), factory=factory, **idiom.options
    )
    assert report.skipped == []
    assert report.rules == list(RULES)


def test_a_parametrized_weight_that_reset_parameters_misses_gets_the_assignment_fix() -> None:
    factory = correct_modules.weight_normed  # nn.Linear's reset_parameters() works in place
    with pytest.raises(ModuleContractError) as caught:
        check_module_contract(factory(), torch.randn(3, 4), factory=factory)
    found = caught.value.violations
    assert caught.value.rules == {"meta-init"}, str(caught.value)
    assert {v.where for v in found} == {
        "parameter 'parametrizations.weight.original0'",
        "parameter 'parametrizations.weight.original1'",
    }
    assert all("right_inverse" in v.fix for v in found)


def test_a_model_with_its_own_initialiser_names_it_with_init() -> None:
    model, x = correct_modules.PatchEmbedding, torch.randn(2, 5, 4)
    with pytest.raises(ModuleContractError) as caught:
        check_module_contract(model(), x, factory=model, rules=["meta-init"])
    (violation,) = caught.value.violations
    assert violation.where == "parameter 'position'"
    assert "init=" in violation.fix
    with pytest.raises(ValueError, match="has no method 'init_weight'"):
        check_module_contract(model(), x, factory=model, init="init_weight")


def test_a_module_that_reads_a_value_while_built_cannot_go_on_meta() -> None:
    factory = correct_modules.orthogonal  # orthogonal() calls .item() on the weight
    with pytest.raises(ModuleContractError) as caught:
        check_module_contract(factory(), torch.randn(3, 4), factory=factory)
    assert caught.value.rules == {"meta-init", "factory-kwargs"}, str(caught.value)
    for violation in caught.value.violations:
        assert "correct_modules.py" in violation.where  # the user's line, not torch's
        assert "after to_empty()" in violation.fix


# torch.nn's own layers keep the contract: the checker must accept every one of them.
# (module factory, inputs); factory None: no parameters, no factory arguments.
Factory = Callable[..., nn.Module]
BUILT_IN_LAYERS: dict[str, tuple[Factory | None, Callable[[], tuple[Tensor, ...]]]] = {
    "Linear": (
        lambda **kw: nn.Linear(4, 5, **kw),
        lambda: (torch.randn(3, 4),),
    ),
    "Conv2d": (
        lambda **kw: nn.Conv2d(3, 4, 3, padding=1, **kw),
        lambda: (torch.randn(2, 3, 5, 5),),
    ),
    "Embedding (integer inputs)": (
        lambda **kw: nn.Embedding(10, 4, padding_idx=0, **kw),
        lambda: (torch.tensor([[1, 2], [3, 0]]),),
    ),
    "LSTM (tuple outputs)": (
        lambda **kw: nn.LSTM(4, 5, num_layers=2, batch_first=True, **kw),
        lambda: (torch.randn(2, 3, 4),),
    ),
    "BatchNorm1d (integer buffer)": (
        lambda **kw: nn.BatchNorm1d(4, **kw),
        lambda: (torch.randn(3, 4),),
    ),
    "Dropout": (None, lambda: (torch.randn(3, 4),)),
    "MultiheadAttention": (
        lambda **kw: nn.MultiheadAttention(8, 2, batch_first=True, **kw),
        lambda: (torch.randn(2, 3, 8),) * 3,
    ),
    "TransformerEncoderLayer": (
        lambda **kw: nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, **kw),
        lambda: (torch.randn(2, 3, 8),),
    ),
}


@pytest.mark.parametrize("name", BUILT_IN_LAYERS)
def test_checker_accepts_torch_nn_layers(name: str) -> None:
    factory, inputs = BUILT_IN_LAYERS[name]
    module = factory() if factory is not None else nn.Dropout(0.5)
    check_module_contract(module, *inputs(), factory=factory)


def test_a_crash_is_reported_as_a_contract_error() -> None:
    with pytest.raises(ModuleContractError, match=r"\[crash\].*shapes cannot be multiplied"):
        check_module_contract(nn.Linear(4, 4), torch.randn(2, 5))


def test_a_rule_can_be_switched_off_with_a_reason() -> None:
    x = torch.randn(3, 4)
    reason = {"unused-parameter": "the auxiliary head is trained in stage 2"}
    report = check_module_contract(broken_modules.UnusedHead(), x, skip=reason)
    skipped = [v.where for v in report.skipped]
    assert skipped == ["parameter 'aux_head.weight'", "parameter 'aux_head.bias'"]
    with pytest.raises(ValueError, match="give the reason"):
        check_module_contract(broken_modules.UnusedHead(), x, skip={"unused-parameter": " "})
    with pytest.raises(ValueError, match="unknown rule 'unused'"):
        check_module_contract(broken_modules.UnusedHead(), x, skip={"unused": "typo"})
    with pytest.raises(ValueError, match="rules: unknown rule 'dtype'"):
        check_module_contract(broken_modules.UnusedHead(), x, rules=["dtype"])


class TwoDtypeBugs(nn.Module):
    """A deliberate float32 step (skipped at its line) and an accidental one (reported)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        y = self.linear(x) + torch.ones(4)  # accidental: float32 whatever the module's dtype
        return self.deliberate(y)

    def deliberate(self, y: Tensor) -> Tensor:
        return y * torch.full((4,), 0.5)  # deliberate, say: a float32 constant table


def test_a_skip_covers_only_the_place_it_names() -> None:
    x = torch.randn(3, 4)
    with pytest.raises(ModuleContractError) as caught:
        check_module_contract(
            TwoDtypeBugs(), x, rules=["fixed-dtype"], skip={"fixed-dtype@deliberate()": "a table"}
        )
    wheres = [v.where for v in caught.value.violations]
    assert len(wheres) == 1, str(caught.value)
    assert "torch.ones(4)" in wheres[0]
    line = int(wheres[0].split(" ")[0].rpartition(":")[2])  # file:line in function() `code`
    report = check_module_contract(
        TwoDtypeBugs(),
        x,
        rules=["fixed-dtype"],
        skip={
            "fixed-dtype@deliberate()": "a float32 table, by design",
            f"fixed-dtype@test_contract.py:{line}": "the ones, by design",
        },
    )
    assert len(report.skipped) == 2


def test_a_skip_that_matches_nothing_is_reported() -> None:
    with pytest.raises(ModuleContractError, match=r"\[stale-skip\] fixed-dtype@mask"):
        check_module_contract(nn.Linear(4, 4), torch.randn(3, 4), skip={"fixed-dtype@mask": "x"})


def test_forward_keyword_inputs_are_passed() -> None:
    x, mask = torch.randn(3, 5, 4), torch.ones(3, 5)
    check_module_contract(correct_modules.MaskedMean(), x, kwargs={"mask": mask})
    with pytest.raises(ModuleContractError, match=r"\[crash\].*missing.*mask"):
        check_module_contract(broken_modules.KeywordOnly(), x)


def test_a_meta_run_that_stops_early_says_where_and_the_rest_is_checked() -> None:
    case = broken_modules.GuardThenFixedDevice()
    with pytest.raises(ModuleContractError) as caught:
        check_module_contract(case, torch.randn(2, 3, 4), rules=["fixed-device"])
    error = caught.value
    assert any("meta run stopped at" in n and "torch.isnan(x).any()" in n for n in error.notes)
    assert "torch.arange(x.shape[1])" in str(error)


def test_an_activation_kept_on_self_gets_the_detach_advice() -> None:
    with pytest.raises(ModuleContractError) as caught:
        check_module_contract(broken_modules.KeepsActivation(), torch.randn(3, 4))
    (violation,) = caught.value.violations
    assert "graph-attached" in violation.fix
    assert "detached copy" in violation.fix
    assert "register" not in violation.fix


def test_a_module_made_in_forward_is_reported_once_by_name() -> None:
    with pytest.raises(ModuleContractError) as caught:
        check_module_contract(broken_modules.LinearMadeInForward(), torch.randn(3, 4))
    (violation,) = caught.value.violations
    assert violation.where == "local Linear 'projection' in forward()"


def test_installed_libraries_count_as_library_code() -> None:
    assert testing._is_library(np.__file__)  # numpy: installed, in site-packages
    assert not testing._is_library(__file__)


HELPER_LIBRARY = """
import torch

def running_total(x, layer):
    total = torch.zeros(x.shape[0], 4, device=x.device)  # float32, whatever x is
    for _ in range(2):
        total = total + layer(x)
    return total
"""


def test_a_finding_inside_an_installed_library_points_at_the_users_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site-packages"  # another environment's, as pip --target makes
    (site / "totals_helper").mkdir(parents=True)
    (site / "totals_helper" / "__init__.py").write_text(HELPER_LIBRARY)
    monkeypatch.syspath_prepend(str(site))
    import totals_helper  # noqa: PLC0415 - installed by this test

    class UsesHelper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 4)

        def forward(self, x: Tensor) -> Tensor:
            return totals_helper.running_total(x, self.linear)

    with pytest.raises(ModuleContractError) as caught:
        check_module_contract(UsesHelper(), torch.randn(3, 4))
    wheres = [v.where for v in caught.value.violations if v.rule == "fixed-dtype"]
    assert wheres, str(caught.value)
    assert all("test_contract.py" in where for where in wheres), wheres
    assert any("totals_helper.running_total(x, self.linear)" in w for w in wheres), wheres


def test_the_checker_leaves_the_module_and_the_random_state_alone() -> None:
    module = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    x = torch.randn(3, 4)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    rng = torch.get_rng_state()
    check_module_contract(module, x)
    assert module.training
    assert all(torch.equal(v, state[k]) for k, v in module.state_dict().items())
    assert all(p.grad is None for p in module.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_layer_gradients_match_finite_differences() -> None:
    layer = Layer(4, 3, dtype=torch.float64)
    with torch.no_grad():  # away from the initial values, one output feature masked
        layer.gamma.uniform_(0.5, 1.5)
        layer.bias.uniform_(-1.0, 1.0)
        layer.feature_mask[1] = 0.0
    names = [name for name, _ in layer.named_parameters()]

    def forward(x: Tensor, *parameters: Tensor) -> Tensor:
        state = dict(zip(names, parameters, strict=True))
        return torch.func.functional_call(layer, state, (x,))

    x = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    parameters = [p.detach().requires_grad_() for p in layer.parameters()]
    assert torch.autograd.gradcheck(forward, (x, *parameters))
    assert torch.autograd.gradgradcheck(forward, (x, *parameters))


def test_layer_under_cpu_autocast_returns_the_autocast_dtype() -> None:
    layer = Layer(5, 3)
    x = torch.randn(4, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = layer(x)
    assert output.dtype == torch.bfloat16  # as nn.Linear under autocast
    output.float().sum().backward()
    assert layer.weight.grad is not None
    assert layer.weight.grad.dtype == torch.float32  # the parameters stay float32


@pytest.mark.slow  # about 5 s: dynamo traces forward and backward
def test_layer_compiles_to_one_graph() -> None:
    if not torch._dynamo.is_dynamo_supported():
        pytest.skip(f"torch.compile does not support this platform with torch {torch.__version__}")
    layer = Layer(5, 3)
    x = torch.randn(2, 4, 5)
    # fullgraph: a graph break fails the test. aot_eager traces forward and backward
    # without needing a C++ compiler; the default backend (inductor) compiles the same graph.
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), layer(x))
    compiled(x).sum().backward()
    assert all(p.grad is not None for p in layer.parameters())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ddp_worker(rank: int, world_size: int, port: int, out: Path) -> None:
    """One process of the DDP test: two training steps, then save the replica."""
    torch.set_num_threads(1)  # two processes on a small machine: no oversubscription
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
    )
    try:
        torch.manual_seed(rank)  # different initial weights: DDP must broadcast rank 0's
        model = DistributedDataParallel(Model(SMALL))  # find_unused_parameters=False
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(2):  # the second step raises if a parameter went unused
            generator = torch.Generator().manual_seed(10 * step + rank)  # per-rank data
            x = torch.randn(8, SMALL.in_features, generator=generator)
            target = torch.randint(SMALL.num_classes, (8,), generator=generator)
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), target).backward()
            unused = [name for name, p in model.module.named_parameters() if p.grad is None]
            assert not unused, f"parameters that got no gradient: {unused}"
            optimizer.step()
        # Compared by the test, not by a collective on Python objects.
        torch.save(model.module.state_dict(), out / f"rank{rank}.pt")
        # Both ranks leave together: a rank that tears gloo down while its peer is still
        # connected can hang or abort the peer.
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # about 6 s: two processes start and import torch
def test_distributed_data_parallel_on_two_cpu_processes(tmp_path: Path) -> None:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip(f"torch {torch.__version__} was built without the gloo backend")
    # forkserver: one fresh process imports torch (and torch._dynamo, which DDP imports)
    # once and forks both workers; spawn, where forkserver is missing, imports it in each.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    multiprocessing.set_forkserver_preload(["torch", "torch._dynamo", "torch.nn.parallel"])
    workers = mp.start_processes(
        ddp_worker, (2, free_port(), tmp_path), nprocs=2, start_method=method, join=False
    )
    deadline = time.monotonic() + 120
    while not workers.join(timeout=5):  # raises if a worker failed
        if time.monotonic() > deadline:
            for process in workers.processes:
                process.kill()
            pytest.fail("the two DDP processes did not finish within 120 s (a hang)")
    replicas = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(2)]
    assert replicas[0].keys() == set(Model(SMALL).state_dict())
    # Rank 0's weights were broadcast, and the averaged gradients kept both replicas equal.
    for key, value in replicas[0].items():
        torch.testing.assert_close(replicas[1][key], value, rtol=0, atol=0, msg=key)


@pytest.mark.cuda
def test_layer_moves_to_cuda_and_computes_the_same() -> None:
    layer = Layer(5, 3)
    x = torch.randn(4, 5)
    expected = layer(x)
    layer.to("cuda")
    assert {t.device.type for t in (*layer.parameters(), *layer.buffers())} == {"cuda"}
    output = layer(x.to("cuda"))
    assert output.device.type == "cuda"
    torch.testing.assert_close(output.cpu(), expected, rtol=1e-4, atol=1e-4)
    assert layer.to("cpu").weight.device.type == "cpu"


@pytest.mark.cuda
def test_model_keeps_the_contract_on_cuda() -> None:
    model = model_factory(device="cuda")
    x = torch.randn(8, SMALL.in_features, device="cuda")
    check_module_contract(model, x, factory=model_factory)
    assert Model(SMALL).to("cuda").predict(torch.randn(2, SMALL.in_features)).device.type == "cuda"


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_layer_under_cuda_autocast_returns_the_autocast_dtype(dtype: torch.dtype) -> None:
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip(f"{torch.cuda.get_device_name()} has no bfloat16 support")
    layer = Layer(5, 3, device="cuda")
    x = torch.randn(4, 5, device="cuda")
    with torch.autocast("cuda", dtype=dtype):
        output = layer(x)
        reference = nn.Linear(5, 3, device="cuda")(x)
    assert output.dtype == reference.dtype == dtype
    output.float().sum().backward()
    assert layer.weight.grad is not None
    assert layer.weight.grad.dtype == torch.float32


# Blind spots (issue #23)


def test_a_random_non_persistent_buffer_is_not_replayed_by_the_fresh_instance() -> None:
    torch.manual_seed(0)  # the seed the checker's own calls use: no replay all the same
    factory = broken_modules.RandomFeatures
    with pytest.raises(ModuleContractError) as caught:
        check_module_contract(factory(), torch.randn(3, 4), factory=factory, rules=["state-dict"])
    assert [v.where for v in caught.value.violations] == ["buffer 'frequencies'"]


def test_a_module_that_cannot_be_copied_is_named_and_checked_without_a_copy() -> None:
    with pytest.raises(ModuleContractError) as caught:
        check_module_contract(broken_modules.ScaleFromParameter(), torch.randn(3, 4))
    crash = [v for v in caught.value.violations if v.rule == "crash"]
    assert [v.where for v in crash] == ["attribute 'scale'"], str(caught.value)
    assert "deepcopy" in crash[0].problem
    assert any("only plain-container" in note for note in caught.value.notes)
