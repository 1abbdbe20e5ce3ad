"""Experiment: an adversarial phase after ELBO training, to sharpen the decoder at the same sampling cost.

Takes a finished default run, freezes its encoder and prior (so the run's aggregate-posterior prior
stays valid), and fine-tunes the decoder on its reconstructions of the training images with the
reconstruction loss plus a hinge GAN loss from a small label-conditioned patch discriminator
(spectral normalisation; the adversarial weight set each step as in VQGAN: the ratio of the two
losses' gradient norms at the decoder's last layer, times ``--gan-weight``). The decoder's shape is
unchanged, so the exported graph and its FLOPs are the same. Writes a copy of the run with the new
decoder; then ``cvae-sdk export`` and ``cvae-sdk evaluate`` score it as any run, its samples and its
reconstructions (``benchmarks/decoder_gap.py`` records the same scores for the run before).

    python benchmarks/adversarial_phase.py RUN --out RUN-adv [--epochs 10] [--gan-weight 1.0] [--set NAME]

With ``--set NAME`` (a set of ``own_data.py``) it then runs ``cvae-sdk evaluate RUN-adv`` with that
set's independent classifier and appends the scores to ``benchmarks/results/adversarial_phase.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from cvae_sdk_training.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from cvae_sdk_training.model import CVAE, ModelConfig
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from cvae_sdk.data import load_dataset

RESULTS = Path(__file__).resolve().parent / "results" / "adversarial_phase.jsonl"
KEYS = ("label_fidelity", "worst_class_fidelity", "frechet_ratio", "diversity_ratio")


class PatchDiscriminator(nn.Module):
    """Real/fake logits per patch of an image (B, C, H, W) given its label, which enters as K planes."""

    def __init__(self, channels: int, classes: int, width: int = 64) -> None:
        super().__init__()
        self.classes = classes
        self.net = nn.Sequential(
            spectral_norm(nn.Conv2d(channels + classes, width, 4, 2, 1)), nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(width, 2 * width, 4, 2, 1)), nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(2 * width, 1, 3, 1, 1)))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        planes = F.one_hot(y, self.classes).float()[:, :, None, None].expand(-1, -1, *x.shape[2:])  # (B, K, H, W)
        return self.net(torch.cat([x, planes], 1))                                                 # (B, 1, H/4, W/4)


def adaptive_weight(rec: torch.Tensor, gan: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """||d rec / d last|| / ||d gan / d last||: the GAN term pulls as hard as the reconstruction term."""
    g_rec = torch.autograd.grad(rec, last, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan, last, retain_graph=True)[0]
    return (g_rec.norm() / (g_gan.norm() + 1e-4)).clamp(0.0, 1e4).detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--gan-weight", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", default=None, help="evaluate and record as this own-data set")
    parser.add_argument("--work", type=Path, default=Path("/tmp/cvae-own-data"))
    parser.add_argument("--mnist", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"))
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    state = load_checkpoint(resolve_checkpoint(args.run))
    model = CVAE(ModelConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["model"])
    train = load_dataset(state["train_config"]["data"]).train
    x_all, y_all = torch.from_numpy(train.images), torch.from_numpy(train.labels)
    disc = PatchDiscriminator(x_all.shape[1], model.cfg.num_classes)
    decoder = [p for name, p in model.named_parameters() if name.startswith("decoder.")]
    last = [p for p in decoder if p.dim() >= 2][-1]
    opt_g = torch.optim.Adam(decoder, lr=args.lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=args.lr, betas=(0.5, 0.9))
    generator = torch.Generator().manual_seed(args.seed)
    history = []
    started = time.perf_counter()
    for epoch in range(args.epochs):
        perm = torch.randperm(x_all.shape[0], generator=generator)
        sums = np.zeros(4)
        for lo in range(0, perm.shape[0], args.batch_size):
            idx = perm[lo:lo + args.batch_size]
            x, y = x_all[idx], y_all[idx]                                        # (B, C, H, W), (B,)
            with torch.no_grad():
                mu, logvar = model.encode(x, y)                                  # the frozen encoder
                z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=generator)
            logits = model.decode_logits(z, y)                                   # (B, C, H, W)
            fake = torch.sigmoid(logits)
            d_loss = F.relu(1 - disc(x, y)).mean() + F.relu(1 + disc(fake.detach(), y)).mean()
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            rec = model.recon_nll(logits, x).mean()
            gan = -disc(fake, y).mean()
            weight = adaptive_weight(rec, gan, last)
            loss = rec + args.gan_weight * weight * gan
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()
            sums += [float(rec), float(gan), float(d_loss), float(weight)]
        steps = -(-perm.shape[0] // args.batch_size)
        row = dict(zip(("recon_nll", "gan", "disc", "weight"), (sums / steps).tolist(), strict=True))
        history.append({"epoch": epoch + 1, **row})
        print(json.dumps(history[-1]), flush=True)
    if args.out.exists():
        shutil.rmtree(args.out)
    shutil.copytree(args.run, args.out)
    state["model"] = model.state_dict()
    state["adversarial_phase"] = {"epochs": args.epochs, "gan_weight": args.gan_weight, "lr": args.lr,
                                  "seconds": time.perf_counter() - started, "history": history}
    save_checkpoint(state, args.out / resolve_checkpoint(args.run).name)
    print(json.dumps({"run": str(args.out), "seconds": state["adversarial_phase"]["seconds"]}))
    if args.set is not None:
        record(args, state["adversarial_phase"])


def record(args: argparse.Namespace, phase: dict[str, object]) -> None:
    """Evaluate the new run as `own_data.py` scores a set, and append the row."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from own_data import build, cli

    data, classifier = build(args.set, args.work, args.mnist)
    report_path = args.out / "adversarial-eval.json"
    cli("evaluate", str(args.out), "--data", data, "--json", str(report_path), "--quiet", "--no-likelihood",
        *(["--classifier", classifier] if classifier else []))
    report = json.loads(report_path.read_text())
    row = {"set": args.set, "epochs": args.epochs, "gan_weight": args.gan_weight, "lr": args.lr,
           "phase_seconds": round(float(phase["seconds"]), 1),  # type: ignore[arg-type]
           "samples": {k: report[k] for k in KEYS}, "reconstructions": {k: report["reconstruction"][k] for k in KEYS}}
    with RESULTS.open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
