"""Where the residual connection and the normalisation sit in a transformer block.

The engine's Block is pre-LN (GPT-2, GPT-3, LLaMA). Chapter 4 compares it with two other
layouts built from the very same sublayers (block.ln_1, block.attn, block.ln_2, block.mlp):

    "pre"   x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))        what Block.forward does
    "post"  x = ln_1(x + attn(x));  x = ln_2(x + mlp(x))        the 2017 Transformer
    "none"  x = attn(ln_1(x));      x = mlp(ln_2(x))            pre-LN with the skips removed

LayoutGPT is a TinyGPT whose blocks run in one of these layouts; train_layout trains one briefly on
the agreement language. The exercise checks use block_forward as their reference.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmlab import agreement
from llmlab.model import GPTConfig, TinyGPT

LAYOUTS = ("pre", "post", "none")


def block_forward(block, x, layout="pre"):
    """Run an engine Block's sublayers on x (B, T, C) in the given layout; returns (B, T, C)."""
    if layout == "pre":
        x = x + block.attn(block.ln_1(x))[0]  # attn returns (output, weights)
        return x + block.mlp(block.ln_2(x))
    if layout == "post":
        x = block.ln_1(x + block.attn(x)[0])
        return block.ln_2(x + block.mlp(x))
    if layout == "none":
        x = block.attn(block.ln_1(x))[0]
        return block.mlp(block.ln_2(x))
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


class LayoutGPT(TinyGPT):
    """A TinyGPT whose blocks run in `layout` (no KV cache: it is for training experiments).

    Post-LN ends every block with a norm, so it has no final ln_f (as in the 2017 Transformer);
    the other layouts keep it.
    """

    def __init__(self, config: GPTConfig, layout="pre"):
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        super().__init__(config)
        self.layout = layout

    def forward(self, idx):
        """Logits (B, T, V) for token ids idx (B, T)."""
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block_forward(block, x, self.layout)
        if self.layout != "post":
            x = self.ln_f(x)
        return self.lm_head(x)


def xavier_init_(model):
    """Xavier-normal init for every matrix in the blocks and head (the setting Xiong et al. 2020
    analyse); the engine's default (normal, standard deviation 0.02) is tuned for pre-LN.
    Returns the model."""
    for module in model.modules():
        if not isinstance(module, nn.Embedding):
            weight = getattr(module, "weight", None)
            if isinstance(weight, nn.Parameter) and weight.dim() == 2:
                nn.init.xavier_normal_(weight)
    return model


def deep_model(layout, n_layer, n_embd=64, n_head=4, seed=0):
    """A fresh, Xavier-initialised LayoutGPT for the agreement language."""
    torch.manual_seed(seed)
    config = GPTConfig(
        vocab_size=len(agreement.VOCAB),
        block_size=16,
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
    )
    return xavier_init_(LayoutGPT(config, layout))


def loss_on(model, inputs, targets):
    """Mean next-token cross-entropy (padding ignored)."""
    logits = model(inputs)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)


def block_grad_norms(model):
    """Per block, the norm of the gradient of all its weight matrices together (after backward)."""
    return [
        torch.cat(
            [p.grad.flatten() for p in block.parameters() if p.dim() == 2 and p.grad is not None]
        )
        .norm()
        .item()
        for block in model.blocks
    ]


def train_layout(model, inputs, targets, steps=100, lr=1e-3, warmup=0, batch_size=32, seed=0):
    """Adam on random batches of (inputs, targets); lr rises linearly over `warmup` steps (0: none).

    Returns the loss at every step. The model is left in eval mode.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    batches = torch.Generator().manual_seed(seed)
    history = []
    model.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup) if warmup else lr
        rows = torch.randint(len(inputs), (batch_size,), generator=batches)
        loss = loss_on(model, inputs[rows], targets[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    model.eval()
    return history
