"""optim.py: which parameters decay, and the learning-rate schedule, each rule alone."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from {{ cookiecutter.package_name }} import optim
from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.optim import Schedule


def test_only_weights_of_two_or_more_dimensions_decay() -> None:
    model = Model()
    decay, no_decay = optim.parameter_groups(model.named_parameters(), weight_decay=0.1)
    names = {id(p): name for name, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    kept = {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.1
    assert no_decay["weight_decay"] == 0.0
    assert decayed == {name for name, p in model.named_parameters() if p.dim() >= 2}
    assert decayed
    assert all(name.endswith("weight") for name in decayed)
    assert kept == {name for name, p in model.named_parameters() if p.dim() < 2}
    assert any(name.endswith("bias") for name in kept)
    assert any(name.endswith("gamma") for name in kept)


def test_normalisation_parameters_do_not_decay() -> None:
    norm = torch.nn.LayerNorm(8)
    assert not any(optim.decays(p) for p in norm.parameters())
    assert optim.decays(torch.nn.Linear(8, 8).weight)


def test_frozen_parameters_are_left_out() -> None:
    model = Model()
    model.layers[0].weight.requires_grad_(False)
    decay, _ = optim.parameter_groups(model.named_parameters(), weight_decay=0.1)
    assert all(p is not model.layers[0].weight for p in decay["params"])


def test_the_optimizer_decays_weights_and_leaves_biases_and_scales() -> None:
    torch.manual_seed(0)
    model = Model()
    optimizer = optim.build_optimizer(model, lr=0.1, weight_decay=0.5)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: only the decay moves a parameter
    optimizer.step()
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            torch.testing.assert_close(p, before[name] * (1 - 0.1 * 0.5), msg=name)
        else:
            assert torch.equal(p, before[name]), name


def test_warmup_rises_linearly_to_the_peak() -> None:
    schedule = Schedule(lr=1.0, warmup_steps=4, decay_steps=100, min_lr=0.1)
    rates = [schedule(step) for step in range(5)]
    assert rates[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert rates[4] == pytest.approx(1.0)


def test_cosine_decays_to_the_floor_and_stays_there() -> None:
    schedule = Schedule(lr=1.0, warmup_steps=0, decay_steps=100, min_lr=0.1)
    assert schedule(0) == pytest.approx(1.0)
    assert schedule(50) == pytest.approx(0.55)  # halfway: the mean of peak and floor
    assert schedule(100) == schedule(1000) == 0.1
    rates = [schedule(step) for step in range(101)]
    assert all(a >= b for a, b in itertools.pairwise(rates))


def test_constant_schedule_ignores_warmup_and_decay() -> None:
    schedule = Schedule(lr=0.3, kind="constant", warmup_steps=10, decay_steps=20)
    assert {schedule(step) for step in (0, 5, 15, 25)} == {0.3}


def test_schedule_state_is_a_plain_dict() -> None:
    state = Schedule(lr=0.5, warmup_steps=2, decay_steps=9, min_lr=0.0).state_dict()
    assert state == {
        "lr": 0.5,
        "kind": "cosine",
        "warmup_steps": 2,
        "decay_steps": 9,
        "min_lr": 0.0,
    }
    assert all(not isinstance(v, float) or math.isfinite(v) for v in state.values())
