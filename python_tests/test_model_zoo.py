"""PreActResNet-18 and the conversions on a torchvision-style ResNet (written here: no
torchvision dependency), including what they cannot convert."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from robustkernels.models import build_model, preact_resnet18
from robustkernels.nn import LWTA, PNIConv2d, PNILinear, convert_activations, convert_to_pni


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock: one ReLU module used twice, a downsample Sequential."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision.models.resnet.ResNet's layout (stem conv 7x7, max pool, 4 stages, avgpool, fc)."""

    def __init__(self, layers=(1, 1, 1, 1), num_classes=10, width=8):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(8 * width, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width, num_classes)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class FunctionalHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(12, 8), nn.Linear(8, 3)
        self.weight = nn.Parameter(torch.randn(3, 3))

    def forward(self, x):
        h = F.relu(self.fc1(x))
        return F.linear(self.fc2(h).relu(), self.weight)


def test_preact_resnet18_has_the_reference_shape():
    model = preact_resnet18()
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(11.17e6, rel=0.01)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 10)
    out.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in model.parameters())
    lwta = build_model("preact-resnet18", activation="lwta", pni=True)
    assert lwta(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert any(isinstance(m, PNIConv2d) for m in lwta.modules())
    with pytest.raises(ValueError, match="competitors"):
        preact_resnet18(activation="lwta", competitors=3)


def test_conversions_cover_a_torchvision_style_resnet_silently():
    torch.manual_seed(0)
    model = ResNet()
    relus = sum(isinstance(m, nn.ReLU) for m in model.modules())
    layers = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    x = torch.rand(2, 3, 32, 32)
    with _no_warnings():
        convert_activations(model)
        convert_to_pni(model)
    assert sum(isinstance(m, LWTA) for m in model.modules()) == relus
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert sum(isinstance(m, (PNIConv2d, PNILinear)) for m in model.modules()) == layers
    out = model(x)
    out.sum().backward()
    assert out.shape == (2, 10) and all(p.grad is not None for p in model.parameters())


def test_conversions_name_what_they_cannot_convert():
    model = nn.Sequential(nn.Flatten(), FunctionalHead())
    with pytest.warns(UserWarning, match=r"FunctionalHead.forward line \d+: h = F.relu") as caught:
        convert_activations(model)
    assert "fc2(h).relu()" in str(caught[0].message) and "found no ReLU module" in str(caught[0].message)
    with pytest.warns(UserWarning, match=r"1 functional Conv2d/Linear call.*F.linear\(self.fc2"):
        convert_to_pni(model)
    assert isinstance(model[1].fc1, PNILinear)  # the module layers were still converted
    with pytest.raises(ValueError, match="functional ReLU"):
        convert_activations(nn.Sequential(FunctionalHead()), strict=True)


class _no_warnings:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings(record=True)
        self.caught = self._ctx.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        assert not [str(w.message) for w in self.caught if issubclass(w.category, UserWarning)]
