"""Saving and loading trained TinyGPTs; the course ships one, trained by `python -m llmlab.train`."""

import platform
from pathlib import Path

import torch

from llmlab.model import GPTConfig, TinyGPT

CHECKPOINT = Path(__file__).parent / "checkpoints" / "agreement.pt"


def machine_fingerprint() -> dict:
    """What decides a training run's float bits besides the seed: the CPU, the kernels torch
    picks for it, the torch build, and the thread count (sums are split across threads)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        fields = {key.strip(): value.strip() for key, value in fields.items()}
        # The marketing name alone ("AMD EPYC") covers several generations with different kernels.
        cpu = "{} (family {}, model {}, stepping {})".format(
            fields["model name"], fields["cpu family"], fields["model"], fields["stepping"]
        )
    except (OSError, KeyError, ValueError):
        pass
    return {
        "cpu": cpu,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": str(torch.__version__),  # a TorchVersion object would not load with weights_only
        "threads": torch.get_num_threads(),
    }


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
