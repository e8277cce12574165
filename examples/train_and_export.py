"""From a dataset to a trained, exported model, with the library only (docs/tutorial.md).

Trains a recurrent LIF network online with OSTTP on delayed XOR (generated, no files needed) or on
smnist-rows (MNIST from $OSTTP_DATA, docs/data.md), prints the valid accuracy before and after,
writes the network as a NIR graph and checks that the file reads back to the same network.

    python examples/train_and_export.py --out model.nir                       # delayed XOR, ~1 min
    python examples/train_and_export.py --task smnist-rows --limit 10000 --epochs 2 --out model.nir
"""
from __future__ import annotations

import argparse

import torch

import osttp
from osttp.calibration import calibrate_firing
from osttp.evaluation import evaluate_model
from osttp.tasks import Task


def load(task: str, limit: int) -> tuple[Task, Task]:
    if task == "delayed-xor":
        params = {"delay": 5, "n_train": limit}
        return osttp.tasks.load(task, "train", **params), osttp.tasks.load(task, "valid", **params)
    return osttp.tasks.load(task, "train", limit=limit), osttp.tasks.load(task, "valid")


def train(learner: osttp.Learner, task: Task, epochs: int, batch_size: int) -> None:
    for epoch in range(epochs):
        for batch in task.batches(batch_size, shuffle=True, seed=epoch):
            learner.reset(batch.xs.shape[1])          # new sequences: zero states and traces
            for x_t, y_t, m_t in zip(batch.xs, batch.ys, batch.mask):
                learner.step(x_t, y_t, m_t)            # forward, traces and local learning, one step
            learner.apply()                            # the accumulated update: .grad, optimizer.step()


def export(net: osttp.Network, path: str, valid: Task) -> float:
    """Write the NIR file, read it back, and return the largest output difference on a valid batch."""
    import nir

    from osttp.interop import from_nir, to_nir

    nir.write(path, to_nir(net))
    back = from_nir(nir.read(path), dtype=net.dtype)
    xs = next(iter(valid.batches(64))).xs
    with torch.no_grad():
        return float((back(xs) - net(xs)).abs().max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="delayed-xor", choices=["delayed-xor", "smnist-rows"])
    ap.add_argument("--limit", type=int, default=2048, help="training sequences")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--out", default="model.nir", help="the NIR file to write")
    args = ap.parse_args()
    torch.set_num_threads(1)  # small networks: one thread is faster and steadier on a shared machine

    train_split, valid = load(args.task, args.limit)
    net = osttp.Network.from_sizes([train_split.n_in, args.hidden, train_split.n_out], cell="lif",
                                   recurrent=True, readout="integrator", seed=0)
    calibrate_firing(net, next(iter(train_split.batches(256))).xs, rate=0.1)  # ~10 % of the units fire
    learner = osttp.make_learner("osttp", net, optimizer=torch.optim.Adam(net.parameters(), lr=2e-3))
    print(f"{args.task}: valid accuracy at init {evaluate_model(net, valid)['accuracy']:.3f}")
    train(learner, train_split, args.epochs, batch_size=64)
    print(f"{args.task}: valid accuracy after {args.epochs} epochs {evaluate_model(net, valid)['accuracy']:.3f}")
    diff = export(net, args.out, valid)
    print(f"wrote {args.out}; read back, its outputs differ by at most {diff:.1e}")


if __name__ == "__main__":
    main()
