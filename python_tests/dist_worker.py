"""Worker for the 2-process gloo test (a module of its own so spawned processes can import it)."""

import os
import sys

import torch
import torch.distributed as dist


def exit_now() -> None:
    """End a spawned worker without interpreter teardown, where a library's thread left joinable
    now and then aborts the process ("terminate called without an active exception", SIGABRT)
    after its work is done and saved."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def train_small(dataset: bool = False, method: str = "pgd_at"):
    """The run both sides of the test make: PGD-AT (no random start) or ATTA (its buffer kept per
    sample across the processes) on 256 digits, 2 epochs, SGD; the samples as tensors or
    (``dataset``) as a TensorDataset."""
    from python_tests.models import small_cnn
    from robustkernels.data import load_digits
    from robustkernels.train import fit, make_method

    x, y, _, _ = load_digits()
    torch.manual_seed(0)
    model = small_cnn()
    data = torch.utils.data.TensorDataset(x[:256], y[:256]) if dataset else (x[:256], y[:256])
    averaged = method.endswith("+wa")  # with weight averaging: the model ends holding the average
    method = method.removesuffix("+wa")
    options = {"pgd_at": dict(steps=3, random_start=False), "atta": dict(steps=2)}[method]
    history = fit(model, make_method(method, eps=0.1, **options), data,
                  epochs=2, batch_size=64, lr=0.05, optimizer="sgd", progress=False,
                  weight_average=0.9 if averaged else None)
    return model, history


def train_rank(rank: int, world: int, init_file: str, out: str, dataset: bool = False, method: str = "pgd_at") -> None:
    os.environ["WORLD_SIZE"] = str(world)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model, history = train_small(dataset, method)
    if rank == 0:
        torch.save({"state": model.state_dict(), "history": history}, out)
    dist.barrier()  # no process tears its connections down while a peer may still use them
    dist.destroy_process_group()
    exit_now()


def autoattack_small():
    """The AutoAttack run both sides of the autoattack agreement test make (5 batches of 20)."""
    from python_tests.models import trained_digits_cnn
    from robustkernels.eval import autoattack

    model, x, y = trained_digits_cnn()
    return autoattack(model, (x[:100], y[:100]), eps=0.1, batch_size=20, seed=3, steps=10, n_queries=200,
                      progress=False)


def autoattack_rank(rank: int, world: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    report = autoattack_small()
    if rank == 0:
        torch.save(report.to_dict(), out)
    dist.barrier()  # no process tears its connections down while a peer may still use them
    dist.destroy_process_group()
    exit_now()
