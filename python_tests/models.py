"""Small real models for the attack tests: a CNN trained on the bundled digits in seconds."""

import functools

import torch
from torch import nn

from robustkernels.data import load_digits


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
    )


@functools.cache
def trained_digits_cnn():
    """(model, x_test, y_test): a CNN with about 97% clean test accuracy on the digits."""
    torch.manual_seed(0)
    x_train, y_train, x_test, y_test = load_digits()
    model = small_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(15):
        for batch in torch.randperm(len(y_train)).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    model.eval()
    return model, x_test, y_test


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


# User models that fail with a speed lever (8x8 one-channel inputs, 10 classes)

class ViewNet(nn.Module):
    """The common user pattern ``.view(B, -1)`` after a convolution: fails on a channels_last
    activation (the view spans non-contiguous dimensions)."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).view(x.shape[0], -1))


class IndexPutNet(nn.Module):
    """Writes its logits into an fp32 buffer by index: fails under bf16 autocast (index_put
    needs matching dtypes)."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        out = torch.zeros(x.shape[0], 10, device=x.device)
        out[torch.arange(x.shape[0])] = self.fc(torch.relu(self.conv(x)).flatten(1))
        return out


class NaNInBf16(nn.Module):
    """Runs in fp32; its input gradient is NaN whenever the convolution ran in bf16."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        h = self.conv(x)
        return self.fc((h * float("nan") if h.dtype == torch.bfloat16 else h).flatten(1))
