"""PNI layers, drop-in conversion, the noise switch and the optimizer groups."""

import pytest
import torch
from torch import nn

import robustkernels
from robustkernels.nn import PNIConv2d, PNILinear, convert_to_pni, pni_param_groups, set_pni_noise


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, bias=False), nn.ReLU()),
        nn.Flatten(), nn.Linear(6 * 3 * 3, 10),
    )


@pytest.mark.parametrize("granularity", ["layer", "channel", "element"])
def test_conversion_keeps_weights_and_outputs_at_zero_alpha(granularity):
    model = small_cnn().eval()
    x = torch.rand(3, 1, 8, 8)
    expected = model(x)
    weights = [p for p in model.parameters()]
    returned = convert_to_pni(model, granularity, alpha_init=0.0)
    assert returned is model
    pni_layers = [m for m in model.modules() if isinstance(m, (PNIConv2d, PNILinear))]
    assert len(pni_layers) == 3 and not any(type(m) in (nn.Conv2d, nn.Linear) for m in model.modules())
    assert all(any(p is w for p in model.parameters()) for w in weights)  # same tensors, nothing copied
    assert torch.equal(model(x), expected)
    for layer in pni_layers:
        expected_shape = {"layer": (1,), "channel": (layer.weight.shape[0],), "element": tuple(layer.weight.shape)}
        assert layer.alpha.shape == expected_shape[granularity]


def test_noise_on_in_train_and_eval_and_switch_turns_it_off():
    model = convert_to_pni(small_cnn())
    x = torch.rand(2, 1, 8, 8)
    for mode in (model.train, model.eval):
        mode()
        assert not torch.equal(model(x), model(x))  # fresh noise on every forward
    set_pni_noise(model, False)
    model.eval()
    assert torch.equal(model(x), model(x))
    clean = small_cnn().eval()
    clean.load_state_dict(model.state_dict(), strict=False)  # same weights and BN statistics, no alphas
    torch.testing.assert_close(model(x), clean(x))
    assert "noise_enabled=False" in repr(model[0])


def test_alpha_learns_and_gets_gradients():
    model = convert_to_pni(small_cnn(), "channel")
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    nn.functional.cross_entropy(model(x), y).backward()
    for layer in (model[0], model[3][0], model[5]):
        assert layer.alpha.grad is not None and layer.alpha.grad.abs().sum() > 0
        assert layer.weight.grad is not None


def test_param_groups_put_alphas_without_decay():
    model = convert_to_pni(small_cnn())
    groups = pni_param_groups(model, 5e-4)
    alphas = [m.alpha for m in model.modules() if isinstance(m, (PNIConv2d, PNILinear))]
    assert groups[0]["weight_decay"] == 5e-4 and groups[1]["weight_decay"] == 0.0
    assert {id(p) for p in groups[1]["params"]} == {id(a) for a in alphas}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    torch.optim.SGD(groups, lr=0.1)  # accepted as optimizer groups


def test_layers_construct_directly_and_match_functional():
    conv = PNIConv2d(3, 5, 3, padding=1, granularity="channel")
    lin = PNILinear(7, 2, alpha_init=0.1)
    assert conv.alpha.shape == (5,) and torch.all(conv.alpha == 0.25)
    assert lin.alpha.shape == (1,) and torch.all(lin.alpha == 0.1)
    x = torch.rand(2, 3, 4, 4)
    torch.manual_seed(3)
    out = conv(x)
    torch.manual_seed(3)
    w = robustkernels.ops.noisy_weight(conv.weight, conv.alpha)
    torch.testing.assert_close(out, nn.functional.conv2d(x, w, conv.bias, padding=1))


def test_state_dict_round_trip():
    model = convert_to_pni(small_cnn(), "element")
    state = model.state_dict()
    assert "0.alpha" in state and "5.alpha" in state
    other = convert_to_pni(small_cnn(), "element")
    other.load_state_dict(state)
    assert torch.equal(other[0].alpha, model[0].alpha)


def test_converting_a_single_layer_and_twice():
    layer = nn.Linear(3, 2)
    pni = convert_to_pni(layer)
    assert isinstance(pni, PNILinear) and pni.weight is layer.weight
    assert convert_to_pni(pni) is pni  # already converted: left alone


def test_bad_arguments():
    with pytest.raises(ValueError, match="granularity must be one of"):
        convert_to_pni(small_cnn(), "kernel")
    with pytest.raises(ValueError, match="granularity must be one of"):
        PNIConv2d(1, 1, 3, granularity="kernel")
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        convert_to_pni("resnet")
    with pytest.raises(TypeError, match="alpha_init must be a float"):
        PNILinear(2, 2, alpha_init="0.25")
    with pytest.raises(ValueError, match="weight_decay must be"):
        pni_param_groups(small_cnn(), -1.0)
    with pytest.raises(TypeError, match="enabled must be a bool"):
        set_pni_noise(small_cnn(), 1)
