"""Certification is sound by construction: every module is bounded by its exact semantics or
refused by name. A hypothesis fuzz over random networks built from everything the bound code
accepts checks that no certified sample falls to PGD with restarts or to random vertices of its
box, and that the margins' bounds hold at every point tried; every shape it does not know is
refused with one clear error naming the module's path."""

import copy
import types

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, default_collate

from robustkernels.attacks import PGD
from robustkernels.certify import NotBoundable, certified_accuracy, interval_bounds, margin_bounds
from robustkernels.data import Fields
from robustkernels.eval import evaluate
from robustkernels.models.preact import PreActBlock, norm_act_factory
from robustkernels.nn import IBPConv2d, IBPLinear
from robustkernels.threat import normalize

from .helpers import DictDataset
from .models import trained_digits_cnn

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
ACTIVATIONS = [nn.ReLU, lambda: nn.LeakyReLU(0.1), lambda: nn.LeakyReLU(-0.5),
               lambda: nn.LeakyReLU(1.5), nn.Tanh, nn.Sigmoid, nn.ELU, nn.ReLU6, lambda: nn.Hardtanh(-0.5, 0.3),
               nn.Softplus, lambda: nn.Softplus(1.0, 0.5), lambda: nn.Softplus(2.0, -0.2),
               lambda: nn.Softplus(-1.5, 0.3)]  # thresholds where softplus jumps down to the identity


def _randomise(model: nn.Module, seed: int) -> nn.Module:
    """Random weights, BatchNorm statistics and IBP masks (about a third of connections cut)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.6)
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.running_var is not None:
                m.running_mean.uniform_(-0.3, 0.3, generator=g)
                m.running_var.uniform_(0.3, 2.0, generator=g)
            if isinstance(m, (IBPLinear, IBPConv2d)):
                m.mask_logits.copy_(torch.randn(m.mask_logits.shape, generator=g, dtype=m.mask_logits.dtype) * 8)
    return model.eval()


def _activations(layers: list) -> list:
    return [m for m in layers if isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.Hardtanh,
                                                nn.Softplus))]


@st.composite
def networks(draw):
    """(model, input shape, normalization): conv stages, residual blocks, pooling, BN, IBP layers,
    modules used at two places (an activation, a square Linear with its activation)."""
    channels, side = draw(st.integers(1, 3)), draw(st.integers(5, 8))
    layers, c, input_side = [], channels, side
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["conv", "conv", "ibpconv", "block", "bn", "act", "maxpool", "avgpool", "again"]))
        if kind == "again":  # an activation object already in the network, used once more
            layers.append(draw(st.sampled_from(_activations(layers) or [nn.ReLU()])))
        elif kind in ("conv", "ibpconv"):
            out, k = draw(st.integers(1, 4)), draw(st.integers(1, 3))
            pad = draw(st.integers(0, min(1, side - 1)))
            mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
            stride, dilation = draw(st.integers(1, 2)), draw(st.integers(1, 2))
            if side + 2 * pad < dilation * (k - 1) + 1:
                continue
            cls = nn.Conv2d if kind == "conv" else IBPConv2d
            layers.append(cls(c, out, k, stride=stride, padding=pad, dilation=dilation, padding_mode=mode,
                              bias=draw(st.booleans())))
            c, side = out, (side + 2 * pad - dilation * (k - 1) - 1) // stride + 1
        elif kind == "block":
            out, stride = draw(st.sampled_from([c, c + 1])), draw(st.sampled_from([1, 1, 2]))
            activation = draw(st.sampled_from([nn.ReLU, nn.ReLU, nn.Tanh, lambda: nn.LeakyReLU(-0.3)]))
            norm_act = norm_act_factory("relu") if activation is nn.ReLU else (
                lambda ch: (nn.BatchNorm2d(ch), activation()))
            layers.append(PreActBlock(c, out, stride, norm_act))
            c, side = out, (side - 1) // stride + 1
        elif kind == "bn":
            layers.append(nn.BatchNorm2d(c, affine=draw(st.booleans())))
        elif kind == "act":
            layers.append(draw(st.sampled_from(ACTIVATIONS))())
        elif side >= 2:
            overlap = draw(st.booleans())
            cls = nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d
            layers.append(cls(3, 1, 1) if overlap else cls(2))
            side = side if overlap else side // 2
        layers.append(draw(st.sampled_from(ACTIVATIONS))())
    head = draw(st.sampled_from(["flatten", "gap"]))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()] if head == "gap" else [nn.Flatten()]
    features = c if head == "gap" else c * side * side
    hidden = draw(st.integers(3, 8))
    linear = IBPLinear if draw(st.booleans()) else nn.Linear
    layers += [linear(features, hidden), nn.Dropout(0.3), draw(st.sampled_from(ACTIVATIONS))()]
    if draw(st.booleans()):
        square, activation = nn.Linear(hidden, hidden), draw(st.sampled_from(ACTIVATIONS))()
        layers += [square, activation, square, activation]
    layers.append(nn.Linear(hidden, draw(st.integers(2, 5))))
    if draw(st.booleans()):  # a nested Sequential and an Identity, as users write them
        layers = [nn.Sequential(*layers[:2]), nn.Identity(), *layers[2:]]
    model = _randomise(nn.Sequential(*layers).double(), draw(st.integers(0, 2**16)))
    normalization = None
    if draw(st.booleans()):
        normalization = ([0.5] * channels, [draw(st.sampled_from([0.25, 0.5, 2.0]))] * channels)
    return model, (channels, input_side, input_side), normalization


def _broken(model, x, y, eps, normalization, seed):
    """Which samples PGD (3 restarts) or 256 random vertices of the box misclassify."""
    def forward(t):
        if normalization is None:
            return model(t)
        mean, std = (torch.tensor(v, dtype=t.dtype).view(1, -1, 1, 1) for v in normalization)
        return model((t - mean) / std)

    atk = PGD(model, eps=eps, alpha=eps / 4, steps=20, restarts=3, normalization=normalization,
              generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        fooled = forward(atk(x, y)).argmax(1) != y
    lower, upper = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    g = torch.Generator().manual_seed(seed)
    margins_seen = []
    with torch.no_grad():
        for i in range(len(x)):
            u = torch.rand(256, *x.shape[1:], generator=g, dtype=x.dtype)
            u[:128] = u[:128].round()
            z = forward(lower[i] + u * (upper[i] - lower[i]))
            fooled[i] |= bool((z.argmax(1) != y[i]).any())
            margins_seen.append((z[:, y[i], None] - z).amin(0))
    return fooled, torch.stack(margins_seen)


def _outputs_inside(model, lower, upper, normalization=None, points=256, seed=0):
    """The model's outputs at random points and vertices of each box lie within its interval
    bounds."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        lo, hi = interval_bounds(model, lower, upper, normalization=normalization)
        for i in range(len(lower)):
            u = torch.rand(points, *lower.shape[1:], generator=g, dtype=lower.dtype)
            u[: points // 2] = u[: points // 2].round()
            z = model(normalize(lower[i] + u * (upper[i] - lower[i]), normalization))
            assert (z >= lo[i] - 1e-9).all() and (z <= hi[i] + 1e-9).all(), "an output outside its bounds"


# about one network in four gets an instance forward on one of its modules (picked by index)
SOMETIMES_REPLACED = st.sampled_from([False, False, False, True]).flatmap(
    lambda replace: st.integers(0, 99) if replace else st.none())


def _replace_forward(model: nn.Module, which: int) -> None:
    """Give one module (picked by ``which``) an instance forward that doubles its class's."""
    modules = list(model.modules())
    victim = modules[which % len(modules)]
    victim.forward = types.MethodType(lambda self, t: 2 * type(self).forward(self, t), victim)


@FUZZ
@given(networks(), st.sampled_from([1e-3, 1e-2, 5e-2]), st.integers(0, 2**16), SOMETIMES_REPLACED)
def test_certificates_hold_on_random_networks(net, eps, seed, replaced):
    """Every network the graph accepts: bounds contain the real outputs and margins, and no
    certified sample falls; one with an instance-level forward is refused by name."""
    model, shape, normalization = net
    x = torch.rand(6, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    with torch.no_grad():
        y = model(normalize(x, normalization)).argmax(1)  # correct by construction, so certification is possible
    lower, upper = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    if replaced is not None:
        _replace_forward(model, replaced)
        for method in ("ibp", "crown-ibp"):
            with pytest.raises(NotBoundable, match="its instance replaces the method 'forward'"):
                certified_accuracy(model, (x, y), eps, method=method, normalization=normalization)
        return
    _outputs_inside(model, lower, upper, normalization, seed=seed)
    fooled, seen = _broken(model, x, y, eps, normalization, seed)
    for method in ("ibp", "crown-ibp"):
        with torch.no_grad():
            bound = margin_bounds(model, lower, upper, y, method, normalization=normalization)
        assert (seen >= bound - 1e-9).all(), f"{method}: a margin below its lower bound"
        report = certified_accuracy(model, (x, y), eps, method=method, normalization=normalization)
        assert not (torch.tensor(report.certified) & fooled).any(), f"{method}: a certified sample fell"



@st.composite
def affine_layers(draw):
    """(layer, input shape): one affine layer of every accepted kind and option."""
    c, side = draw(st.integers(1, 3)), draw(st.integers(3, 6))
    kind = draw(st.sampled_from(["conv", "conv", "ibpconv", "bn2d", "bn1d", "avgpool", "adaptive", "linear"]))
    if kind in ("conv", "ibpconv"):
        k, pad = draw(st.integers(1, 3)), draw(st.integers(0, min(2, side - 1)))
        groups = draw(st.sampled_from([g for g in (1, c) if c % g == 0]))
        cls = nn.Conv2d if kind == "conv" else IBPConv2d
        layer = cls(c, groups * draw(st.integers(1, 2)), k, stride=draw(st.integers(1, 2)), padding=pad,
                    dilation=draw(st.integers(1, 2)) if side + 2 * pad >= 2 * k else 1, groups=groups,
                    padding_mode=draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"])),
                    bias=draw(st.booleans()))
        shape = (c, side, side)
    elif kind == "bn2d":
        layer, shape = nn.BatchNorm2d(c, affine=draw(st.booleans())), (c, side, side)
    elif kind == "bn1d":
        layer, shape = nn.BatchNorm1d(c * side, affine=draw(st.booleans())), (c * side,)
    elif kind == "avgpool":
        layer = nn.AvgPool2d(draw(st.integers(1, 3)), draw(st.integers(1, 2)), padding=draw(st.integers(0, 1)),
                             ceil_mode=draw(st.booleans()), count_include_pad=draw(st.booleans()),
                             divisor_override=draw(st.sampled_from([None, 2])))
        shape = (c, side, side)
        if layer.kernel_size < 2 * layer.padding:
            layer.padding = 0
    elif kind == "adaptive":
        layer, shape = nn.AdaptiveAvgPool2d(draw(st.integers(1, 3))), (c, side, side)
    else:
        layer, shape = nn.Linear(c * side, draw(st.integers(1, 4)), bias=draw(st.booleans())), (c * side,)
    return _randomise(layer.double(), draw(st.integers(0, 2**16))), shape


@FUZZ
@given(affine_layers(), st.integers(0, 2**16))
def test_one_affine_layer_is_bounded_exactly(layer_shape, seed):
    """IBP through one affine map is exact: f(c) -+ |J| r, J the layer's Jacobian taken by autograd."""
    layer, shape = layer_shape
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, *shape, generator=g, dtype=torch.float64)
    radius = torch.rand(1, *shape, generator=g, dtype=torch.float64) * 0.1
    with torch.no_grad():
        lo, hi = interval_bounds(layer, x - radius, x + radius)
        center = layer(x)
    jacobian = torch.autograd.functional.jacobian(lambda t: layer(t), x).reshape(center.numel(), -1)
    spread = (jacobian.abs() @ radius.flatten()).view_as(center)
    torch.testing.assert_close(lo, center - spread, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(hi, center + spread, rtol=1e-10, atol=1e-10)


class _Doubled(nn.Linear):  # a layer subclass with its own forward
    def forward(self, x):
        return 2 * super().forward(x)


class _Scaled(nn.Sequential):  # a Sequential subclass that normalises its input
    def forward(self, x):
        return super().forward((x - 0.5) * 4)


class _Block(nn.Module):  # a user module with its own forward
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        return x + self.conv(x)


def _head(*body, features=2 * 6 * 6):
    return nn.Sequential(*body, nn.Flatten(), nn.Linear(features, 3))


def _hooked(kind):
    model = _head(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU())
    if kind == "hook":
        model[1].register_forward_hook(lambda m, i, o: -o)
    else:
        model[0].register_forward_pre_hook(lambda m, i: (i[0] * 3,))
    return model


def _replaced(what):
    """A model with a method replaced on one instance: the class's semantics no longer apply."""
    model = _head(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU())
    if what == "forward":
        model[1].forward = lambda t: -t
    elif what == "_conv_forward":
        model[0]._conv_forward = types.MethodType(lambda self, t, w, b: -nn.Conv2d._conv_forward(self, t, w, b),
                                                  model[0])
    elif what == "Sequential forward":
        model.forward = types.MethodType(lambda self, t: -nn.Sequential.forward(self, t), model)
    else:
        model[1]._compiled_call_impl = lambda t: -t
    return model


REFUSED = {
    "layer subclass": (_head(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), _Doubled(72, 72)),
                       r"^3 \(_Doubled\): a subclass of Linear may change its function"),
    "Sequential subclass": (_Scaled(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(72, 3)),
                            r"^model \(_Scaled\): a subclass of Sequential"),
    "user block": (nn.Sequential(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), _Block()), nn.Flatten(),
                                 nn.Linear(72, 3)), r"^0\.1 \(_Block\): forward is not a known layer"),
    "forward hook": (_hooked("hook"), r"^1 \(ReLU\): it has forward hooks"),
    "pre-hook": (_hooked("pre"), r"^0 \(Conv2d\): it has forward hooks"),
    "GELU": (_head(nn.Conv2d(1, 2, 3, padding=1), nn.GELU()), r"^1 \(GELU\): forward is not a known layer"),
    "BN without running stats": (_head(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2, track_running_stats=False)),
                                 r"^1 \(BatchNorm2d\): BatchNorm without running statistics"),
    "max pool indices": (_head(nn.MaxPool2d(2, return_indices=True), features=9),
                         r"^0 \(MaxPool2d\): return_indices=True"),
    "ELU negative alpha": (_head(nn.Conv2d(1, 2, 3, padding=1), nn.ELU(-1.0)), r"^1 \(ELU\): ELU with alpha=-1"),
    "instance forward": (_replaced("forward"), r"^1 \(ReLU\): its instance replaces the method 'forward'"),
    "instance method": (_replaced("_conv_forward"), r"^0 \(Conv2d\): its instance replaces the method '_conv_forward'"),
    "instance Sequential forward": (_replaced("Sequential forward"),
                                    r"^model \(Sequential\): its instance replaces the method 'forward'"),
    "instance compiled call": (_replaced("compiled"), r"^1 \(ReLU\): _compiled_call_impl is not torch.compile"),
    "Softplus beta 0": (_head(nn.Conv2d(1, 2, 3, padding=1), nn.Softplus(0.0)),
                        r"^1 \(Softplus\): Softplus with beta=0.0 is not a finite function"),
    "PNI": (None, r"\(PNIConv2d\): a stochastic layer"),
    "LWTA": (None, r"\(LWTA\): a stochastic layer"),
}


def _stochastic(name):
    from robustkernels.models import build_model

    activation, pni = ("relu", True) if name == "PNI" else ("lwta", False)
    return build_model("cnn", in_channels=1, image_size=6, activation=activation, pni=pni)


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_the_bounds_do_not_know_is_refused_by_path(case):
    model, message = REFUSED[case]
    model = _stochastic(case) if model is None else model
    x, y = torch.rand(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])
    for method in ("ibp", "crown-ibp"):
        with pytest.raises(NotBoundable, match=message) as info:
            certified_accuracy(model.eval(), (x, y), 0.01, method=method)
        assert isinstance(info.value, ValueError) and "certification supports" in str(info.value)


def test_global_forward_hooks_are_refused():
    hook = nn.modules.module.register_module_forward_hook(lambda m, i, o: o)
    try:
        with pytest.raises(NotBoundable, match="global forward hooks"):
            certified_accuracy(_head(nn.Conv2d(1, 2, 3, padding=1)), (torch.rand(2, 1, 6, 6), torch.tensor([0, 1])),
                               0.01)
    finally:
        hook.remove()


def test_inputs_outside_the_bounds_and_bad_labels_are_refused():
    model, x, y = trained_digits_cnn()
    with pytest.raises(ValueError, match=r"data: 1 samples of batch 0 lie outside bounds \[0, 1\]"):
        certified_accuracy(model, (torch.cat([x[:3], x[3:4] + 1.5]), y[:4]), 0.01)
    with pytest.raises(ValueError, match=r"data: labels must lie in \[0, 10\)"):
        certified_accuracy(model, (x[:4], torch.tensor([0, 1, 12, 3])), 0.01)
    with pytest.raises(ValueError, match="data: x holds NaN"):
        certified_accuracy(model, (x[:4].clone().index_fill_(0, torch.tensor([1]), float("nan")), y[:4]), 0.01)
    with pytest.raises(ValueError, match="eps must be finite"):
        certified_accuracy(model, (x[:4], y[:4]), float("inf"))


def test_normalization_equals_the_same_map_folded_into_the_first_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)).double().eval()
    mean, std = [0.2, 0.4, 0.6], [0.5, 0.25, 2.0]
    folded = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)).double().eval()
    folded.load_state_dict(model.state_dict())
    m, s = (torch.tensor(v, dtype=torch.float64).repeat_interleave(4) for v in (mean, std))
    with torch.no_grad():
        folded[1].weight.div_(s)
        folded[1].bias.sub_(folded[1].weight @ m)
    x = torch.rand(5, 3, 2, 2, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1])
    for method in ("ibp", "crown-ibp"):
        ours = margin_bounds(model, x - 0.03, x + 0.03, y, method, normalization=(mean, std))
        torch.testing.assert_close(ours, margin_bounds(folded, x - 0.03, x + 0.03, y, method), rtol=1e-9, atol=1e-9)



def test_certified_accuracy_reads_tensors_datasets_loaders_and_dict_batches():
    model, x, y = trained_digits_cnn()
    x, y = x[:70], y[:70]
    expected = certified_accuracy(model, (x, y), 0.01).certified
    for data in (TensorDataset(x, y), DataLoader(TensorDataset(x, y), batch_size=16), DictDataset(x, y),
                 DataLoader(DictDataset(x, y), batch_size=32),
                 Fields(DataLoader(DictDataset(x, y, ("pixels", "cls")), batch_size=32), x="pixels", y="cls")):
        assert certified_accuracy(model, data, 0.01).certified == expected
    with pytest.raises(ValueError, match=r"a dict batch with keys \['cls', 'pixels'\]; name its input and label"):
        certified_accuracy(model, DataLoader(DictDataset(x, y, ("pixels", "cls")), batch_size=32), 0.01)


def test_evaluate_never_prints_a_certificate_an_attack_broke(monkeypatch):
    """Bounds that lie (every sample 'certified', patched in) make the column INVALID, name the
    samples and fail the check loudly."""
    import importlib

    from robustkernels.certify import CertifiedReport

    evaluate_module = importlib.import_module("robustkernels.eval.eval_pass")

    model, x, y = trained_digits_cnn()
    n = 60
    monkeypatch.setattr(evaluate_module, "certified_accuracy",
                        lambda *a, **k: CertifiedReport(0.3, n, 1.0, 1.0, [True] * n, "ibp"))
    with pytest.warns(UserWarning, match="certificate is INVALID"):
        report = evaluate(model, (x[:n], y[:n]), eps=0.3, attacks=("pgd",), certify="ibp", checks=False,
                          progress=False, generator=torch.Generator().manual_seed(0))
    check = [c for c in report.checks if c.name == "certified <= empirical"][0]
    broken = report.certified["broken"]
    assert check.status == "fail" and report.certified["accuracy"] is None and len(broken) > 10
    assert f"samples {', '.join(map(str, broken[:5]))}" in check.detail
    text = report.to_markdown()
    assert "INVALID" in text and "100.0%" not in text.split("**Certified**")[1].split("\n")[0]


def test_evaluate_certifies_a_normalised_model():
    model, x, y = trained_digits_cnn()
    report = evaluate(model, (x[:40], y[:40]), eps=0.01, attacks=("pgd",), certify="crown-ibp", checks=False,
                      normalization=(0.0, 1.0), progress=False, generator=torch.Generator().manual_seed(0))
    assert report.certified["accuracy"] == certified_accuracy(model, (x[:40], y[:40]), 0.01).certified_accuracy
    with pytest.raises(NotBoundable, match=r"^1 \(GELU\)"):
        evaluate(_head(nn.Conv2d(1, 2, 3, padding=1), nn.GELU(), features=2 * 8 * 8), (x[:8], y[:8] % 3), eps=0.01,
                 certify="ibp", checks=False, progress=False)


def _shared(which: int) -> nn.Sequential:
    """A Linear and a ReLU used twice, or a whole nested Sequential used twice."""
    linear, relu, head = nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3)
    if which == 0:
        return nn.Sequential(nn.Flatten(), linear, relu, linear, relu, head)
    block = nn.Sequential(nn.Linear(6, 6), nn.Tanh())
    return nn.Sequential(nn.Flatten(), block, block, relu, head)


@pytest.mark.parametrize("which", [0, 1])
def test_a_module_used_twice_is_bounded_at_each_use(which):
    """Bounds, margins and verdicts equal those of the same network with a separate copy at
    each position; the real outputs stay inside and no certified sample falls."""
    model = _randomise(_shared(which).double(), which)
    copies = nn.Sequential(*[copy.deepcopy(m) for m in model])
    x = torch.rand(16, 1, 2, 3, generator=torch.Generator().manual_seed(which), dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
        assert torch.equal(copies(x), model(x))
    eps = 0.02
    lower, upper = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    _outputs_inside(model, lower, upper)
    with torch.no_grad():
        for method in ("ibp", "crown-ibp"):
            torch.testing.assert_close(margin_bounds(model, lower, upper, y, method),
                                       margin_bounds(copies, lower, upper, y, method), rtol=0, atol=0)
    report = certified_accuracy(model, (x, y), eps)
    fooled, _ = _broken(model, x, y, eps, None, which)
    assert report.certified == certified_accuracy(copies, (x, y), eps).certified
    assert any(report.certified) and not (torch.tensor(report.certified) & fooled).any()


@pytest.mark.parametrize("beta, threshold", [(1.0, 1.0), (1.0, 20.0), (2.0, -0.5), (-1.5, 0.6), (0.5, 3.0)])
def test_softplus_is_bounded_exactly_across_its_switch_to_the_identity(beta, threshold):
    """torch's softplus jumps down where it switches to the identity (beta x > threshold): the
    bounds contain it on a dense grid of each interval and are its range there, to the grid's step."""
    layer = nn.Softplus(beta, threshold)
    g = torch.Generator().manual_seed(0)
    centre = threshold / beta + torch.randn(200, 1, generator=g, dtype=torch.float64) * 0.5
    radius = torch.rand(200, 1, generator=g, dtype=torch.float64) * 0.5
    lower, upper = centre - radius, centre + radius
    lo, hi = interval_bounds(layer, lower, upper)
    values = layer(lower + torch.linspace(0, 1, 20001, dtype=torch.float64) * (upper - lower))
    assert (values >= lo - 1e-12).all() and (values <= hi + 1e-12).all()
    assert (lo >= values.amin(1, keepdim=True) - 1e-3).all() and (hi <= values.amax(1, keepdim=True) + 1e-3).all()


def test_a_sample_across_the_softplus_jump_is_not_certified():
    """softplus(x; threshold=0.8) is 1.07 at 0.65 but 0.84 at 0.84: a class-0 logit softplus(x)
    against a constant 1.0 falls inside the box [0.65, 0.85]."""
    model = nn.Sequential(nn.Flatten(), nn.Softplus(1.0, 0.8), nn.Linear(1, 2)).double().eval()
    with torch.no_grad():
        model[2].weight.copy_(torch.tensor([[1.0], [0.0]]))
        model[2].bias.copy_(torch.tensor([0.0, 1.0]))
        x, y = torch.full((1, 1, 1, 1), 0.75, dtype=torch.float64), torch.tensor([0])
        assert model(x).argmax(1).item() == 0 and model(x + 0.09).argmax(1).item() == 1
    for method in ("ibp", "crown-ibp"):
        assert certified_accuracy(model, (x, y), 0.1, method=method).certified == [False]


@pytest.mark.parametrize("normalization, error, message", [
    ((0.5, 0.0), ValueError, "normalization std must be finite and > 0"),
    ((float("nan"), 0.5), ValueError, "normalization mean must be finite"),
    (("0.5", "0.2"), TypeError, "normalization mean must be a number"),
    (([0.5] * 3, [0.2] * 3), ValueError, r"normalization has 3 values \(one per channel\) but the input has 1 channel"),
])
def test_bad_normalization_is_refused(normalization, error, message):
    model, x, y = trained_digits_cnn()
    with pytest.raises(error, match=message):
        certified_accuracy(model, (x[:4], y[:4]), 0.01, normalization=normalization)


def test_non_finite_logits_are_refused_naming_the_model():
    model, x, y = trained_digits_cnn()
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken[-1].bias[3] = float("nan")
    with pytest.raises(ValueError, match=r"^model: logits hold NaN or inf for 4 of 4 samples of batch 0"):
        certified_accuracy(broken, (x[:4], y[:4]), 0.01)


def _without_nines(items):
    """A collate that filters samples out (here label 9), as users write to skip bad ones."""
    x, y = default_collate(items)
    return x[y != 9], y[y != 9]


def test_no_samples_are_refused_and_an_empty_batch_is_skipped():
    model, x, y = trained_digits_cnn()
    with pytest.raises(ValueError, match=r"^data: no samples$"):
        certified_accuracy(model, (x[:0], y[:0]), 0.01)
    nines, others = ((y == 9).nonzero().flatten()[:3].tolist(), (y != 9).nonzero().flatten()[:12].tolist())
    loader = DataLoader(TensorDataset(x, y), batch_sampler=[others[:5], nines, others[5:]], collate_fn=_without_nines)
    report = certified_accuracy(model, loader, 0.01)
    assert report == certified_accuracy(model, (x[others], y[others]), 0.01) and report.n_samples == 12


def test_dtype_mismatch_and_half_precision_are_refused_by_name():
    model, x, y = trained_digits_cnn()
    with pytest.raises(TypeError, match=r"^data: x is torch.float64 but the model's parameters are torch.float32"):
        certified_accuracy(model, (x[:4].double(), y[:4]), 0.01)
    for half in (torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match=rf"^model: {half} parameters; certification needs float32 or float64"):
            certified_accuracy(copy.deepcopy(model).to(half), (x[:4].to(half), y[:4]), 0.01)
        with pytest.raises(TypeError, match=rf"^data: x is {half}; certification needs float32 or float64"):
            certified_accuracy(nn.Sequential(nn.Flatten()), (x[:4].to(half), y[:4]), 0.01)
    double = certified_accuracy(copy.deepcopy(model).double(), (x[:20].double(), y[:20]), 0.01)
    assert double.certified == certified_accuracy(model, (x[:20], y[:20]), 0.01).certified
