"""Sharpness-aware minimisation: the second pass sees weights moved rho along the gradient, and
the weights come back bit for bit with the ascended gradient kept."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from exporters import commands, sam  # noqa: E402
from monitor.errors import ConfigError  # noqa: E402


def _net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2))


def _loss(net: nn.Module) -> torch.Tensor:
    x = torch.linspace(-1, 1, 12).reshape(3, 4)
    out: torch.Tensor = (net(x) ** 2).sum()
    return out


def _backward(net: nn.Module) -> None:
    _loss(net).backward()  # type: ignore[no-untyped-call]


def test_ascended_moves_weights_rho_along_the_gradient_and_restores_them() -> None:
    net = _net()
    params = list(net.parameters())
    before = [p.detach().clone() for p in params]
    _backward(net)
    first = [p.grad.clone() for p in params if p.grad is not None]
    assert len(first) == len(params)
    norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in first]))
    with sam.ascended(params, 0.05) as yielded:
        assert yielded == pytest.approx(float(norm), rel=1e-6)
        step = torch.cat([(p.detach() - w).flatten() for p, w in zip(params, before, strict=True)])
        assert float(torch.linalg.vector_norm(step)) == pytest.approx(0.05, rel=1e-4)
        direction = torch.cat([g.flatten() for g in first]) / norm
        assert float(step @ direction) == pytest.approx(0.05, rel=1e-4)
        assert all(p.grad is None for p in params)
        _backward(net)
    for p, w in zip(params, before, strict=True):
        assert torch.equal(p.detach(), w)
    second = [p.grad for p in params if p.grad is not None]
    assert len(second) == len(params)
    # The gradient kept is the ascended point's, not the first one.
    assert any(not torch.allclose(g, f) for g, f in zip(second, first, strict=True))


def test_ascended_restores_weights_when_the_second_pass_fails() -> None:
    net = _net()
    before = [p.detach().clone() for p in net.parameters()]
    _backward(net)
    with pytest.raises(RuntimeError, match="boom"), sam.ascended(list(net.parameters()), 0.1):
        raise RuntimeError("boom")
    assert all(torch.equal(p.detach(), w) for p, w in zip(net.parameters(), before, strict=True))


def test_ascended_needs_a_gradient_and_a_positive_radius() -> None:
    net = _net()
    params = list(net.parameters())
    with pytest.raises(ValueError, match="first backward pass"), sam.ascended(params, 0.05):
        pass
    _backward(net)
    with pytest.raises(ValueError, match="rho must be > 0, not 0"), sam.ascended(params, 0.0):
        pass


def test_sam_rho_is_a_recipe_field_checked_at_the_edge() -> None:
    assert commands.train_config({}).sam_rho == 0.0
    assert commands.train_config({"sam_rho": 0.05}).sam_rho == 0.05
    with pytest.raises(ConfigError, match="sam_rho"):
        commands.train_config({"sam_rho": -0.1})
