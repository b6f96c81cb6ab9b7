"""The stochastic ops' key is a one-element int64 tensor that the kernels read when they run:
drawn without a host sync (``torch.compile(fullgraph=True)`` traces the public ops whole), the
same draws as the int seed of the same generator state, and on a GPU a CUDA graph replays the
draw, so every replay gets fresh noise instead of the noise of the capture."""

import pytest
import torch

import robustkernels
from robustkernels import ops
from robustkernels.ops import draw_seed, draw_seed_tensor, seed_tensor
from robustkernels.ops.lwta import lwta_forward
from robustkernels.ops.noise import noise_add

from .conftest import backend_params
from .helpers import capture_cuda_graph


def test_a_seed_tensor_is_the_int_seed_of_the_same_generator_state():
    a, b = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    key = draw_seed_tensor(a, torch.device("cpu"))
    assert key.dtype == torch.int64 and key.dim() == 0 and int(key) == draw_seed(b)
    torch.manual_seed(8)
    first = draw_seed_tensor(None, torch.device("cpu"))
    torch.manual_seed(8)
    assert int(first) == draw_seed()


def test_seed_tensor_checks_its_argument():
    with pytest.raises(ValueError, match="seed"):
        seed_tensor(-1)
    with pytest.raises(TypeError, match="seed"):
        seed_tensor(1.5)
    with pytest.raises(TypeError, match="generator"):
        draw_seed_tensor("gen", torch.device("cpu"))


@pytest.mark.parametrize("backend", backend_params(("reference", "cpp")))
def test_the_stochastic_ops_trace_whole_under_compile(backend):
    """No int() or .item() between the generator and the kernels: fullgraph tracing succeeds, and
    the compiled function draws what eager does from the same global seed."""
    h = torch.randn(2, 4, 3, 3)
    w = torch.randn(4, 4, 3, 3)
    bn_weight, bn_bias = torch.rand(4) + 0.5, torch.randn(4)

    def stochastic(h, w):
        y = ops.inject_noise(ops.lwta(h), 0.1) + ops.noisy_weight(w, 0.2).sum()
        return ops.batch_norm_lwta(y, bn_weight, bn_bias, None, None, training=True)

    with robustkernels.use_backend(backend):
        compiled = torch.compile(stochastic, fullgraph=True, backend="eager")
        torch.manual_seed(3)
        got = compiled(h, w)
        torch.manual_seed(3)
        expected = stochastic(h, w)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("backend", backend_params())
def test_the_kernels_read_the_key_when_they_run(backend):
    """The key tensor's contents at run time decide the draws (what lets a graph replay a fresh
    draw): writing another key into the same tensor gives that key's output."""
    h = torch.randn(3, 4, 5)
    x, alpha, std = torch.randn(3, 20), torch.tensor([0.3]), torch.tensor(1.2)
    key = seed_tensor(11)
    with robustkernels.use_backend(backend):
        first = (lwta_forward(h, 2, 4, 5, 0, 0.67, 0, key, 0), noise_add(x, alpha, std, 1, 60, False, key, 0))
        key.fill_(12)
        second = (lwta_forward(h, 2, 4, 5, 0, 0.67, 0, key, 0), noise_add(x, alpha, std, 1, 60, False, key, 0))
        fresh = (lwta_forward(h, 2, 4, 5, 0, 0.67, 0, seed_tensor(12), 0),
                 noise_add(x, alpha, std, 1, 60, False, seed_tensor(12), 0))
    for a, b, c in zip(first, second, fresh):
        assert torch.equal(b, c) and not torch.equal(a, b)


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("bad", [torch.tensor([1, 2]), torch.tensor(1.0), torch.tensor(1, dtype=torch.int32),
                                 torch.empty((), dtype=torch.int64, device="meta")], ids=str)
def test_a_malformed_key_is_refused_on_every_backend(backend, bad):
    h = torch.randn(2, 4, 3)
    with robustkernels.use_backend(backend), pytest.raises((TypeError, ValueError), match="seed"):
        lwta_forward(h, 2, 4, 3, 0, 0.67, 0, bad, 0)
    with robustkernels.use_backend(backend), pytest.raises((TypeError, ValueError), match="seed"):
        noise_add(torch.randn(2, 6), torch.tensor([0.1]), torch.tensor(1.0), 1, 12, False, bad, 0)


@pytest.mark.parametrize("backend", backend_params(("cpp",)))
def test_the_compiled_kernels_check_the_key_themselves(backend):
    with pytest.raises(RuntimeError, match="one-element int64"):
        torch.ops.robustkernels_C.lwta_forward(torch.randn(2, 4, 3), 2, 4, 3, 0, 0.67, 0, torch.tensor(1.0), 0)


@pytest.mark.parametrize("backend", backend_params())
def test_a_key_changed_in_place_before_backward_is_an_autograd_error(backend):
    """The backward regenerates the forward's draws from the key: a key written over in between
    would give the gradient of other draws, so autograd refuses it."""
    h = torch.randn(3, 4, 5, requires_grad=True)
    x, alpha = torch.randn(3, 20), torch.tensor([0.3], requires_grad=True)
    key = seed_tensor(11)
    with robustkernels.use_backend(backend):
        y = lwta_forward(h, 2, 4, 5, 0, 0.67, 0, key, 0).sum()
        y = y + noise_add(x, alpha, x.std(), 1, 60, False, key, 0).sum()
        key.fill_(12)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.backward()


def test_the_generator_advances_alike_for_an_empty_input():
    """An empty input still takes its key, so the draws after it do not depend on batch sizes;
    argmax takes none (it draws nothing) but checks the generator."""
    a, b = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    ops.lwta(torch.empty(0, 4), generator=a)
    ops.lwta(torch.randn(3, 4), mode="argmax", generator=a)
    draw_seed(b)
    x = torch.zeros(2, 4)
    assert torch.equal(ops.inject_noise(x, 0.1, generator=a), ops.inject_noise(x, 0.1, generator=b))
    with pytest.raises(TypeError, match="generator"):
        ops.lwta(torch.randn(2, 4), mode="argmax", generator=5)


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_cuda_graph_replays_draw_fresh_noise(backend):
    """LWTA and noise injection captured in a CUDA graph: each replay draws a new key inside the
    graph, so replays differ from each other (while a host-int seed would repeat the capture's
    noise), and each replay is a valid draw: two competitors' weights sum to one per block."""
    h = torch.randn(8, 6, 5, 5, device="cuda")
    alpha = torch.tensor([0.5], device="cuda")

    def stochastic():
        return ops.lwta(h), ops.inject_noise(h, alpha)

    with robustkernels.use_backend(backend):
        graph, (y, noisy) = capture_cuda_graph(stochastic)
    outputs = []
    for _ in range(3):
        graph.replay()
        torch.cuda.synchronize()
        outputs.append((y.clone(), noisy.clone()))
    for (y1, n1), (y2, n2) in zip(outputs, outputs[1:]):
        assert not torch.equal(y1, y2) and not torch.equal(n1, n2)
    for y_r, _ in outputs:
        weights = (y_r / h).view(8, 3, 2, 5, 5).sum(dim=2)
        torch.testing.assert_close(weights, torch.ones_like(weights), rtol=1e-5, atol=1e-5)
