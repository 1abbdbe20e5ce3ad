"""The PyTorch training backend of cvae-sdk: model, trainer, export. Needs the [train] extra."""
