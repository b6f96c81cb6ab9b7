"""Lightning and Accelerate with the real packages (the ``[lightning]`` / ``[accelerate]`` extras):
a few steps of robust training through each equal the plain loop with ``RobustLoss`` on the same
batches, step for step; installing them kept the pinned torch."""

import numpy as np
import pytest
import torch
from torch import nn

from robustkernels.data import load_digits
from robustkernels.train import RobustLoss

from .conftest import optional_package
from .models import small_cnn

STEPS, BATCH, LR = 5, 32, 0.05
METHOD = dict(eps=0.1, steps=3)


def _data():
    x, y, _, _ = load_digits()
    return torch.utils.data.TensorDataset(x[:STEPS * BATCH], y[:STEPS * BATCH])


def _plain_loop(autocast=None) -> nn.Module:
    """The reference: RobustLoss in a plain loop over the same batches, SGD."""
    torch.manual_seed(0)
    model = small_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = RobustLoss(model, "pgd-at", seed=0, autocast=autocast, **METHOD)
    for x, y in torch.utils.data.DataLoader(_data(), batch_size=BATCH):
        model.train()
        result = loss_fn(x, y)
        optimizer.zero_grad()
        result.loss.backward()
        optimizer.step()
    return model


def _same_weights(a: nn.Module, b: nn.Module) -> None:
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


def test_the_extras_install_beside_the_pinned_torch():
    lightning, accelerate = optional_package("lightning"), optional_package("accelerate")
    assert torch.__version__.startswith("2.13.0"), torch.__version__  # neither replaced the pinned torch
    assert lightning.__version__ == "2.6.6" and accelerate.__version__ == "1.16.0"


@pytest.mark.parametrize("precision, autocast", [("32-true", None), ("bf16-mixed", "bf16")])
def test_a_lightning_module_trains_as_the_plain_loop(precision, autocast):
    L = optional_package("lightning")
    from robustkernels.integrations.lightning import RobustTrainingMixin

    class Classifier(RobustTrainingMixin, L.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = small_cnn()
            self.robust_training("pgd-at", seed=0, **METHOD)
            self.losses = []

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            result = self.robust_loss(batch, batch_idx)
            self.losses.append(float(result.loss.detach()))
            return result.loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=LR)

    module = Classifier()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, precision=precision, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, torch.utils.data.DataLoader(_data(), batch_size=BATCH))
    assert len(module.losses) == STEPS
    _same_weights(module.net, _plain_loop(autocast))


def test_the_lightning_mixin_refuses_what_it_cannot_use():
    optional_package("lightning")
    from robustkernels.integrations.lightning import RobustTrainingMixin

    module = RobustTrainingMixin()
    with pytest.raises(ValueError, match="method must be one of"):
        module.robust_training("nope", eps=0.1)  # at set-up, not at the first training step
    with pytest.raises(ValueError, match="takes its own optimizer steps"):
        module.robust_training("free-at", eps=0.1)
    with pytest.raises(TypeError, match=r"batch must be \(x, y\) or \(x, y, index\)"):
        module.robust_loss({"x": 1})
    with pytest.raises(RuntimeError, match="call self.robust_training"):
        module.robust_loss((torch.zeros(1, 1, 8, 8), torch.zeros(1, dtype=torch.int64)))


@pytest.fixture
def accelerate():
    """The package, its process-wide state reset after the test (an Accelerator is a singleton)."""
    package = optional_package("accelerate")
    yield package
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def test_an_accelerate_prepared_model_trains_as_the_plain_loop(accelerate):
    from robustkernels.integrations.accelerate import robust_loss

    accelerator = accelerate.Accelerator(cpu=True)
    torch.manual_seed(0)
    model = small_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    loader = torch.utils.data.DataLoader(_data(), batch_size=BATCH)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    loss_fn = robust_loss(accelerator, model, "pgd-at", seed=0, **METHOD)
    for x, y in loader:
        model.train()
        result = loss_fn(x, y)
        optimizer.zero_grad()
        accelerator.backward(result.loss)
        optimizer.step()
    _same_weights(accelerator.unwrap_model(model), _plain_loop())


def test_accelerate_mixed_precision_is_refused_by_name(accelerate):
    from robustkernels.integrations.accelerate import robust_loss

    accelerator = accelerate.Accelerator(cpu=True, mixed_precision="bf16")
    with pytest.raises(ValueError, match="mixed_precision='bf16' patches the model's forward"):
        robust_loss(accelerator, small_cnn(), "pgd-at", eps=0.1)
    with pytest.raises(TypeError, match="accelerator must be an accelerate.Accelerator"):
        robust_loss(object(), small_cnn(), "pgd-at", eps=0.1)


def test_robust_loss_refuses_a_seed_that_is_not_an_int():
    for seed, kind in (("a", TypeError), (True, TypeError), (-1, ValueError)):
        with pytest.raises(kind, match="seed must be an int >= 0"):
            RobustLoss(small_cnn(), "pgd-at", eps=0.1, seed=seed)


def test_robust_loss_takes_a_numpy_seed_as_the_int():
    """A seed read from a NumPy array (np.int64) is the Python int, and stored as one."""
    assert RobustLoss(small_cnn(), "pgd-at", eps=0.1, seed=np.int64(3)).seed == 3
    assert type(RobustLoss(small_cnn(), "pgd-at", eps=0.1, seed=np.int64(3)).seed) is int
