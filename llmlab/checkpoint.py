"""Saving and loading trained TinyGPTs; the course ships one, trained by `python -m llmlab.train`."""

from pathlib import Path

import torch

from llmlab.model import GPTConfig, TinyGPT

CHECKPOINT = Path(__file__).parent / "checkpoints" / "agreement.pt"


def save(model, path, **info):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": vars(model.config), "state_dict": model.state_dict(), "info": info}, path)


def load_agreement_model(path=CHECKPOINT, device=None) -> TinyGPT:
    """The shipped trained model (or one saved by `save`), in eval mode."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"no checkpoint at {path}; create it with `python -m llmlab.train --out {path}`"
        )
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = TinyGPT(GPTConfig(**ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    model.info = ckpt.get("info", {})
    return model.to(device or "cpu").eval()
