"""The CVAE itself: shapes for both architectures at odd image sizes, the loss and the prior."""

from __future__ import annotations

import math

import pytest
import torch
from cvae_sdk_training.model import CVAE, FoldedSubpixelDecoder, ModelConfig, gaussian_kl


@pytest.mark.parametrize(("arch", "upsample"), [("mlp", "subpixel"), ("conv", "subpixel"), ("conv", "transpose")])
@pytest.mark.parametrize(("shape", "classes"), [((1, 28, 28), 10), ((3, 18, 22), 5), ((1, 9, 13), 2)])
def test_shapes_follow_data(arch: str, upsample: str, shape: tuple[int, int, int], classes: int) -> None:
    cfg = ModelConfig(image_shape=shape, num_classes=classes, latent_dim=6, arch=arch,  # type: ignore[arg-type]
                      hidden=32, conv_channels=4, upsample=upsample)  # type: ignore[arg-type]
    model = CVAE(cfg)
    x = torch.rand(5, *shape)
    y = torch.arange(5) % classes
    mu, logvar = model.encode(x, y)
    assert mu.shape == logvar.shape == (5, 6)
    samples = model.decode(mu, y)
    assert samples.shape == (5, *shape)
    assert 0.0 <= samples.min() and samples.max() <= 1.0
    terms = model(x, y, torch.randn(5, 6))
    assert terms.loss.ndim == 0 and torch.isfinite(terms.loss)
    assert terms.kl_per_dim.shape == (6,)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 18, 22), (1, 9, 13)])
def test_folded_subpixel_decoder_is_the_trained_function(shape: tuple[int, int, int]) -> None:
    """Export writes the sub-pixel decoder with its first shuffle folded into the second conv: same outputs."""
    cfg = ModelConfig(image_shape=shape, num_classes=4, latent_dim=5, hidden=24, conv_channels=3)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        decoder = CVAE(cfg).decoder.eval()
        for p in decoder.parameters():  # biases too: nn.Conv2d starts them near zero
            p.data.normal_(0, 0.5)
    folded = FoldedSubpixelDecoder.fold(decoder, cfg).eval()
    z, y = torch.randn(9, 5, generator=torch.Generator().manual_seed(1)), torch.eye(4)[torch.arange(9) % 4]
    with torch.inference_mode():
        want, got = decoder(z, y), folded(z, y)
    assert got.shape == want.shape == (9, *shape)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    # files exported before the channels-last map hold fc.1 with rows in (c, h, w) order: same function
    c, h, w = folded.base
    older = {k: v for k, v in folded.state_dict().items() if not k.startswith("to_map.")}
    for suffix in ("weight", "bias"):
        rows = folded.state_dict()["to_map." + suffix]
        older["fc.1." + suffix] = rows.reshape(h, w, c, -1).permute(2, 0, 1, 3).reshape(rows.shape)
    reloaded = FoldedSubpixelDecoder(cfg).eval()
    reloaded.load_state_dict(older)
    with torch.inference_mode():
        assert torch.equal(reloaded(z, y), got)
    with pytest.raises(ValueError, match="only a sub-pixel decoder folds"):
        FoldedSubpixelDecoder.fold(decoder, ModelConfig(image_shape=shape, num_classes=4, upsample="transpose"))


@pytest.mark.parametrize(("shape", "doublings", "base"), [((1, 28, 28), 2, (7, 7)), ((3, 33, 40), 3, (5, 5)),
                                                     ((3, 64, 64), 3, (8, 8)), ((3, 128, 100), 4, (8, 7))])
@pytest.mark.parametrize("upsample", ["subpixel", "transpose"])
def test_more_doublings_start_from_a_smaller_first_map(
        shape: tuple[int, int, int], doublings: int, base: tuple[int, int], upsample: str) -> None:
    """--doublings N: the dense layer paints a map 2^N times smaller a side; N conv steps up, N down."""
    cfg = ModelConfig(image_shape=shape, num_classes=3, latent_dim=4, hidden=16, conv_channels=4,
                      upsample=upsample, doublings=doublings)  # type: ignore[arg-type]
    model = CVAE(cfg)
    assert model.decoder.base == (8, *base)
    x, y = torch.rand(2, *shape), torch.tensor([0, 2])
    mu, _ = model.encode(x, y)
    assert mu.shape == (2, 4) and model.decode(mu, y).shape == (2, *shape)
    convs = [m for m in model.decoder.deconvs if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert len(convs) == doublings == sum(isinstance(m, torch.nn.Conv2d) for m in model.encoder.convs)
    if doublings != 2 and upsample == "subpixel":
        with pytest.raises(ValueError, match="only a decoder of two doublings folds"):
            FoldedSubpixelDecoder.fold(model.decoder, cfg)
    with pytest.raises(ValueError, match="doublings must be >= 2"):
        ModelConfig(image_shape=shape, num_classes=3, doublings=1)


def test_configs_saved_before_upsample_existed_build_transposed_convs() -> None:
    """The shipped model and older runs saved no ``upsample``: they load as the decoder they trained."""
    from cvae_sdk.backends import TrainConfig

    saved = ModelConfig(image_shape=(1, 8, 8), num_classes=2, hidden=8, latent_dim=2).to_dict()
    del saved["upsample"], saved["doublings"]
    model = CVAE(ModelConfig.from_dict(saved))
    assert model.cfg.doublings == 2
    assert [type(m).__name__ for m in model.decoder.deconvs] == ["ConvTranspose2d", "ReLU", "ConvTranspose2d"]
    assert TrainConfig.from_dict({"data": "d", "out": "o"}).upsample == "transpose"
    assert TrainConfig(data="d", out="o").upsample == ModelConfig((1, 8, 8), 2).upsample == "subpixel"
    with pytest.raises(ValueError, match="upsample must be one of"):
        TrainConfig(data="d", out="o", upsample="bilinear")


def test_kl_is_zero_for_equal_gaussians_and_positive_otherwise() -> None:
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3)
    assert torch.allclose(gaussian_kl(mu, logvar, mu, logvar), torch.zeros(4, 3), atol=1e-6)
    assert (gaussian_kl(mu, logvar, mu + 1, logvar) > 0).all()
    # KL(N(0,1) || N(1,1)) = 1/2
    assert gaussian_kl(torch.zeros(1), torch.zeros(1), torch.ones(1), torch.zeros(1)).item() == pytest.approx(0.5)


def test_bernoulli_recon_is_bce_sum() -> None:
    model = CVAE(ModelConfig(image_shape=(1, 4, 4), num_classes=2, hidden=8, latent_dim=2))
    logits, x = torch.zeros(3, 1, 4, 4), torch.rand(3, 1, 4, 4)
    expected = torch.nn.functional.binary_cross_entropy(torch.full_like(x, 0.5), x, reduction="none").sum((1, 2, 3))
    assert torch.allclose(model.recon_nll(logits, x), expected, atol=1e-5)


def test_learned_prior_gets_gradients_and_standard_prior_does_not() -> None:
    x, y, eps = torch.rand(6, 1, 6, 6), torch.tensor([0, 1, 2, 0, 1, 2]), torch.randn(6, 3)
    for kind, expect_grad in (("learned", True), ("standard", False)):
        model = CVAE(ModelConfig(image_shape=(1, 6, 6), num_classes=3, hidden=8, latent_dim=3, prior=kind))  # type: ignore[arg-type]
        model(x, y, eps).loss.backward()
        assert (model.prior.mean.grad is not None) == expect_grad


def test_gaussian_likelihood_takes_the_batch_error_as_its_variance() -> None:
    """Training takes the batch's mean squared error (its optimum) as the shared variance; evaluation a running one."""
    torch.manual_seed(0)
    model = CVAE(ModelConfig(image_shape=(1, 6, 6), num_classes=3, hidden=8, latent_dim=3, likelihood="gaussian"))
    x, y, eps = torch.rand(4, 1, 6, 6), torch.tensor([0, 1, 2, 0]), torch.randn(4, 3)
    logits = model.decode_logits(eps, y)
    mse = ((x - torch.sigmoid(logits)) ** 2).mean().detach()
    nll = model.recon_nll(logits, x)                                  # training mode: sigma^2 = mse
    expected = 0.5 * 36 * (1 + mse.log() + math.log(2 * math.pi))     # summed over 36 pixels, averaged over the batch
    assert float(nll.mean().detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    assert 0 > float(model.log_sigma2) > float(mse.log())             # the running value moved towards it
    model.eval()
    held = float(model.log_sigma2)
    model.recon_nll(logits, x)
    assert float(model.log_sigma2) == held                            # evaluation reads it and leaves it
    model.train()
    terms = model(x, y, eps)
    terms.loss.backward()
    assert model.decoder.input.bias.grad is not None and model.log_sigma2.grad is None


def test_config_validation_names_the_choice() -> None:
    with pytest.raises(ValueError, match="arch must be"):
        ModelConfig(image_shape=(1, 4, 4), num_classes=2, arch="transformer")  # type: ignore[arg-type]
