"""Models that return a tuple, a dict or an object with ``.logits`` (Hugging Face's classifiers):
refused everywhere with a message naming ``LogitsOf``; wrapped, they run in every attack,
``autoattack``, ``evaluate`` and ``fit`` exactly as the tensor-returning model does; certification
refuses the wrapper by name."""

import warnings

import pytest
import torch
from torch import nn

from robustkernels.attacks import APGD, FAB, PGD, Square
from robustkernels.certify import certified_accuracy
from robustkernels.eval import autoattack, evaluate
from robustkernels.nn import LogitsOf
from robustkernels.train import fit, make_method


class Output:
    def __init__(self, logits):
        self.logits, self.hidden = logits, None


class Heads(nn.Module):
    """The same linear classifier, its logits returned inside a tuple, a dict or an object."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x):
        z = self.body(x)
        return {"tensor": z, "tuple": (z, z.sum()), "dict": {"aux": z.detach() * 0, "logits": z},
                "object": Output(z)}[self.kind]


KINDS = [("tuple", 0, "output=0"), ("dict", "logits", "output='logits'"), ("object", "logits", "output='logits'")]


def _pair(kind):
    torch.manual_seed(0)
    plain = Heads("tensor")
    other = Heads(kind)
    other.load_state_dict(plain.state_dict())
    return plain, other


@pytest.fixture
def data():
    torch.manual_seed(1)
    return torch.rand(12, 1, 4, 4), torch.randint(0, 10, (12,))


@pytest.mark.parametrize("kind, output, hint", KINDS)
def test_unwrapped_outputs_are_refused_naming_the_wrapper(kind, output, hint, data):
    _, model = _pair(kind)
    x, y = data
    for call in (lambda: PGD(model, eps=0.1, steps=2)(x, y),
                 lambda: autoattack(model, (x, y), eps=0.1, version="fast", progress=False),
                 lambda: evaluate(model, (x, y), eps=0.1, attacks=("fgsm",), progress=False),
                 lambda: fit(model, make_method("pgd-at", eps=0.1, steps=2), (x, y), epochs=1, batch_size=6,
                             progress=False)):
        with pytest.raises(TypeError, match=rf"LogitsOf\(model, {hint}\)"):
            call()


@pytest.mark.parametrize("kind, output, hint", KINDS)
def test_wrapped_models_attack_and_train_as_the_tensor_model(kind, output, hint, data):
    x, y = data
    plain, other = _pair(kind)
    wrapped = LogitsOf(other, output=output)
    for attack in (lambda m: PGD(m, eps=0.1, alpha=0.03, steps=5, generator=torch.Generator().manual_seed(0)),
                   lambda m: APGD(m, eps=0.1, steps=5, generator=torch.Generator().manual_seed(0)),
                   lambda m: FAB(m, eps=0.1, steps=5, generator=torch.Generator().manual_seed(0)),
                   lambda m: Square(m, eps=0.1, n_queries=20, generator=torch.Generator().manual_seed(0))):
        assert torch.equal(attack(wrapped)(x, y), attack(plain)(x, y))
    ours = autoattack(wrapped, (x, y), eps=0.1, version="fast", seed=0, progress=False)
    theirs = autoattack(plain, (x, y), eps=0.1, version="fast", seed=0, progress=False)
    assert ours.robust == theirs.robust and ours.robust_after == theirs.robust_after
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = evaluate(wrapped, (x, y), eps=0.1, attacks=("fgsm", "pgd"), progress=False)
        b = evaluate(plain, (x, y), eps=0.1, attacks=("fgsm", "pgd"), progress=False)
    assert a.clean_accuracy == b.clean_accuracy and a.worst_case == b.worst_case
    assert {k: r.robust_accuracy for k, r in a.attacks.items()} == {k: r.robust_accuracy for k, r in b.attacks.items()}
    method = lambda: make_method("pgd-at", eps=0.1, steps=2)  # noqa: E731
    h1 = fit(wrapped, method(), (x, y), epochs=1, batch_size=6, seed=0, progress=False)
    h2 = fit(plain, method(), (x, y), epochs=1, batch_size=6, seed=0, progress=False)
    assert h1[-1]["loss"] == h2[-1]["loss"]
    assert all(torch.equal(p, q) for p, q in zip(other.parameters(), plain.parameters()))
    with pytest.raises((TypeError, ValueError), match="LogitsOf"):
        certified_accuracy(wrapped, (x, y), eps=0.1)


def test_the_wrapper_names_what_is_wrong():
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"output=2: the model returned 2 elements"):
        LogitsOf(Heads("tuple"), output=2)(x)
    with pytest.raises(ValueError, match=r"keys \['aux', 'logits'\]"):
        LogitsOf(Heads("dict"), output="scores")(x)
    with pytest.raises(TypeError, match="output='hidden' is a NoneType, not a logits tensor"):
        LogitsOf(Heads("object"), output="hidden")(x)
    with pytest.raises(TypeError, match="output=0 is a position, but the model returned dict"):
        LogitsOf(Heads("dict"), output=0)(x)
    with pytest.raises(TypeError, match="output must be a str"):
        LogitsOf(Heads("tuple"), output=True)
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        LogitsOf(lambda x: x)
