"""Train the small TinyGPT that chapters 1-4 study, on the agreement language.

    python -m llmlab.train            # writes llmlab/checkpoints/agreement.pt
    python -m llmlab.train --out x.pt --steps 200

Reproducible from the seed, in two senses. Anywhere: the same seed gives a model that behaves like
the shipped one (same agreement decisions, the same loss curve within float noise). Bit for bit:
only on the same CPU kind, torch build and thread count, which the checkpoint records
(`machine_fingerprint`), because float sums follow the BLAS kernels the CPU gets.
"""

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from llmlab import agreement
from llmlab.checkpoint import CHECKPOINT, machine_fingerprint, save
from llmlab.model import GPTConfig, TinyGPT

AGREEMENT_CONFIG = GPTConfig(
    vocab_size=len(agreement.VOCAB), block_size=16, n_layer=2, n_head=4, n_embd=64
)
TRAIN_SEED, HELDOUT_SEED = 0, 1
N_TRAIN = 20_000


def train_agreement_model(
    config=AGREEMENT_CONFIG,
    steps=1500,
    batch_size=128,
    lr=3e-3,
    seed=TRAIN_SEED,
    log_every=250,
    model=None,
):
    """Train on N_TRAIN agreement sentences; returns (model, history of (step, loss)).

    Trains a fresh TinyGPT(config), or `model` if given (a variant a chapter built, e.g. one
    with its position table frozen; parameters with requires_grad=False stay as they are).
    """
    torch.manual_seed(seed)
    sentences = agreement.make_sentences(N_TRAIN, seed=seed)
    inputs, targets = agreement.to_batch(sentences)
    model = TinyGPT(config) if model is None else model
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps, pct_start=0.1
    )
    batches = torch.Generator().manual_seed(seed)
    history = []
    for step in range(1, steps + 1):
        rows = torch.randint(len(inputs), (batch_size,), generator=batches)
        logits = model(inputs[rows])
        loss = F.cross_entropy(logits.flatten(0, 1), targets[rows].flatten(), ignore_index=-100)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        history.append((step, loss.item()))
        if log_every and (step % log_every == 0 or step == steps):
            print(f"step {step:5d}/{steps}  loss {loss.item():.4f}", flush=True)
    model.eval()
    return model, history


def heldout_sentences(n=2000):
    """Fresh sentences, none of which occurs in the training set."""
    train = {s.text for s in agreement.make_sentences(N_TRAIN, seed=TRAIN_SEED)}
    return agreement.make_sentences(n, seed=HELDOUT_SEED, exclude=train)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=str(CHECKPOINT))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=TRAIN_SEED)
    args = parser.parse_args(argv)
    torch.set_num_threads(
        min(2, torch.get_num_threads())
    )  # the course's reference machine; also keeps runs comparable
    t0 = time.perf_counter()
    model, history = train_agreement_model(steps=args.steps, seed=args.seed)
    seconds = time.perf_counter() - t0
    acc = agreement.agreement_accuracy(model, heldout_sentences())
    print(f"trained in {seconds:.1f} s; held-out agreement accuracy {acc:.3f}")
    save(
        model,
        args.out,
        steps=args.steps,
        seed=args.seed,
        final_loss=history[-1][1],
        heldout_accuracy=acc,
        loss_curve=[loss for _, loss in history],  # what a retrain anywhere should follow
        machine=machine_fingerprint(),  # where a retrain should also match bit for bit
    )
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
