"""Network.from_torch against PyTorch autograd on the same module (float64, to 1e-9)."""

from __future__ import annotations

import numpy as np
import pytest

import edgegrad
from edgegrad.interop.layers import layer_grads

torch = pytest.importorskip("torch", reason="torch not installed (pip install torch==2.13.0, a CPU build)")
nn = torch.nn

RTOL, ATOL = 1e-9, 1e-12


def _module(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 7), nn.Tanh(), nn.Linear(7, 6), nn.GELU(), nn.Linear(6, 5), nn.SiLU(),
                         nn.Sequential(nn.Linear(5, 5), nn.ELU()), nn.Linear(5, 4), nn.LeakyReLU(),
                         nn.Linear(4, 4), nn.Softplus(), nn.Linear(4, 3, bias=False), nn.ReLU(),
                         nn.Linear(3, 2), nn.Identity(), nn.Linear(2, 2), nn.Sigmoid())


def _linears(module: nn.Module) -> list:
    return [m for m in module.modules() if type(m) is nn.Linear]


def _torch_grads(module: nn.Module, loss: torch.Tensor) -> tuple[list[np.ndarray], list[np.ndarray]]:
    lin = _linears(module)
    params = [m.weight for m in lin] + [m.bias for m in lin if m.bias is not None]
    grads = torch.autograd.grad(loss, params, retain_graph=True)
    w = [g.numpy() for g in grads[:len(lin)]]
    it = iter(grads[len(lin):])
    b = [next(it).numpy() if m.bias is not None else None for m in lin]
    return w, b


def _bias_grads(net: edgegrad.Network, deltas: np.ndarray, widths: list[int]) -> list[np.ndarray]:
    return np.split(deltas, np.cumsum(widths)[:-1], axis=-1)


@pytest.mark.parametrize("loss_name", ["mse", "bce"])
def test_loss_gradients_equal_autograd(loss_name: str) -> None:
    module = _module(0).double()
    net = edgegrad.Network.from_torch(module)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(9, 4)) * 2
    T = rng.random((9, 2))
    x = torch.tensor(X, requires_grad=False)
    y = module(x)
    t = torch.tensor(T)
    ref = nn.functional.mse_loss(y, t) if loss_name == "mse" else nn.functional.binary_cross_entropy(y, t)
    w_ref, b_ref = _torch_grads(module, ref)
    res = edgegrad.gradients(net, X, targets=T, loss=loss_name)
    np.testing.assert_allclose(res.outputs, y.detach().numpy(), rtol=RTOL, atol=ATOL)
    assert res.loss == pytest.approx(ref.item(), rel=RTOL)
    shapes = [tuple(m.weight.shape) for m in _linears(module)]
    for mine, theirs in zip(layer_grads(res.edge_grads, shapes), w_ref):
        np.testing.assert_allclose(mine, theirs, rtol=RTOL, atol=ATOL)
    for mine, theirs in zip(_bias_grads(net, res.deltas, [s[0] for s in shapes]), b_ref):
        if theirs is not None:
            np.testing.assert_allclose(mine, theirs, rtol=RTOL, atol=ATOL)


def test_output_mode_jacobian_equals_autograd() -> None:
    module = _module(3).double()
    net = edgegrad.Network.from_torch(module)
    X = np.random.default_rng(4).normal(size=(3, 4))
    res = edgegrad.gradients(net, X)
    shapes = [tuple(m.weight.shape) for m in _linears(module)]
    mine = layer_grads(res.edge_grads, shapes)       # per layer: B×K×out×in
    for b in range(X.shape[0]):
        out = module(torch.tensor(X[b:b + 1]))
        for k in range(out.shape[1]):
            w_ref, b_ref = _torch_grads(module, out[0, k])
            for layer, theirs in enumerate(w_ref):
                np.testing.assert_allclose(mine[layer][b, k], theirs, rtol=RTOL, atol=ATOL)
            bias = _bias_grads(net, res.deltas[b, k], [s[0] for s in shapes])
            for layer, theirs in enumerate(b_ref):
                if theirs is not None:
                    np.testing.assert_allclose(bias[layer], theirs, rtol=RTOL, atol=ATOL)


def test_float32_module_is_read_exactly_as_float64() -> None:
    module = _module(5)                                  # float32 parameters
    net = edgegrad.Network.from_torch(module)
    first = _linears(module)[0].weight.detach().numpy().astype(np.float64)
    np.testing.assert_array_equal(net.weights[:first.size], first.ravel())


def test_ids_and_outputs_are_layer_units() -> None:
    net = edgegrad.Network.from_torch(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)))
    assert net.inputs == ("l0_0", "l0_1")
    assert net.node_ids == ("l1_0", "l1_1", "l1_2", "l2_0")
    assert net.outputs == ("l2_0",)
    assert net.activations == ("relu", "relu", "relu", "identity")


@pytest.mark.parametrize("module, message", [
    (lambda: nn.Sequential(nn.Linear(2, 3), nn.Dropout(), nn.Linear(3, 1)),
     "module[1]: unsupported layer Dropout (supported: Linear, Identity, Sigmoid"),
    (lambda: nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.Conv1d(1, 1, 1))),
     "module[1][0]: unsupported layer Conv1d"),
    (lambda: nn.Sequential(nn.Linear(2, 3), nn.LeakyReLU(0.2)),
     "module[1]: LeakyReLU with negative_slope=0.2 is not supported"),
    (lambda: nn.Sequential(nn.Linear(2, 3), nn.Softplus(beta=2)), "module[1]: Softplus with beta=2"),
    (lambda: nn.Sequential(nn.Linear(2, 3), nn.GELU(approximate="tanh")), "GELU with approximate='tanh'"),
    (lambda: nn.Sequential(nn.Tanh(), nn.Linear(2, 3)), "module[0]: Tanh before any Linear layer"),
    (lambda: nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.ReLU()), "module[2]: ReLU right after tanh"),
    (lambda: nn.Sequential(nn.Linear(2, 3), nn.Linear(4, 1)), "weights[1]: has 4 columns but layer 1 has 3"),
    (lambda: nn.Sequential(), "module: has no Linear layer"),
    (lambda: nn.Linear(2, 3), "module: expected a torch.nn.Sequential, got Linear"),
])
def test_unsupported_modules_are_refused_by_name(module, message: str) -> None:
    with pytest.raises(edgegrad.InvalidInput) as info:
        edgegrad.Network.from_torch(module())
    assert message in str(info.value)
