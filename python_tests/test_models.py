"""WideResNet builds for several depths/widths and runs forward/backward."""

import pytest
import torch

from robustkernels.models import wide_resnet


@pytest.mark.parametrize("depth, width", [(10, 1), (16, 2), (22, 1)])
def test_wide_resnet_forward_backward(depth, width):
    torch.manual_seed(0)
    model = wide_resnet(depth, width, num_classes=7)
    x = torch.rand(2, 3, 16, 16)
    out = model(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_wide_resnet_34_10_has_the_published_size():
    params = sum(p.numel() for p in wide_resnet(34, 10).parameters())
    assert 46.0e6 < params < 46.3e6  # 46.2M in Zagoruyko & Komodakis / Madry et al.


@pytest.mark.parametrize("kwargs, match", [(dict(depth=20), "depth must be 6n"), (dict(widen_factor=0), "widen_factor"),
                                           (dict(activation="gelu"), "activation must be one of")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        wide_resnet(**kwargs)
