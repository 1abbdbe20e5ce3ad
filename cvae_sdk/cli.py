"""The ``cvae-sdk`` command line: thin wrappers that parse options and call the library.

Errors a user can fix print one line (``error: ...``) and exit with status 2, no traceback.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer

from cvae_sdk.backends import TrainConfig, TrainingDiverged, capability
from cvae_sdk.exits import EXIT_INTERRUPTED, EXIT_USAGE, USER_ERRORS, StoppedServing, exit_status

# Plain help (rich_markup_mode=None): it shows each option's metavar (LABEL, N) where the rich panels print
# type labels such as <list[str]> and <bool>.
app = typer.Typer(help="Train, export, sample, evaluate, benchmark and serve conditional VAEs.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False, rich_markup_mode=None)
F = TypeVar("F", bound=Callable[..., Any])
_D = TrainConfig(data="", out="")  # the training defaults have one home: TrainConfig
ShippedOrModel = Annotated[Path | None, typer.Argument(metavar="MODEL",
                                                       help="Artifact (.onnx); default: the shipped model.")]
VariantOption = Annotated[Literal["int8", "fp16"] | None, typer.Option(
    help="Load the model's variant written beside it by export --int8/--fp16 (the shipped model has int8).")]


INTERRUPTED = {"train": "interrupted: a checkpoint was saved; continue with --resume"}  # Ctrl-C, by command


def friendly_errors(func: F) -> F:
    """Turn the library's documented errors into one-line messages and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (*USER_ERRORS, TrainingDiverged, StoppedServing, KeyboardInterrupt) as err:
            status = exit_status(err) or EXIT_USAGE
            message = (f"error: {err}" if status != EXIT_INTERRUPTED
                       else INTERRUPTED.get(func.__name__, "interrupted"))
            typer.echo(message, err=True)
            raise typer.Exit(status) from None

    return wrapper  # type: ignore[return-value]


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"cvae-sdk {version('cvae-sdk')}")
        except PackageNotFoundError:
            typer.echo("cvae-sdk (not installed as a distribution)")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """Train, export, sample, evaluate, benchmark and serve conditional VAEs."""


def _progress_enabled(quiet: bool) -> bool:
    return not quiet


@app.command()
@friendly_errors
def train(
    data: Annotated[str, typer.Option(help="IDX folder, .npz file, or 'mnist' to download it.")],
    out: Annotated[Path, typer.Option(help="Run folder for checkpoints, metrics and plots.")],
    arch: Annotated[Literal["dense", "conv", "mlp"], typer.Option(
        help="dense: conv encoder and a Gemm-only decoder; conv: conv encoder and decoder; "
             "mlp: MLP encoder and decoder.")] = _D.arch,  # type: ignore[assignment]
    latent_dim: Annotated[int | None, typer.Option(
        help="Size of z. Default: 16 for grey images, 64 for colour.", show_default=False)] = _D.latent_dim,
    hidden: Annotated[int, typer.Option(help="Width of the hidden layers.")] = _D.hidden,
    conv_channels: Annotated[int, typer.Option(help="Base channel count of the conv layers.")] = _D.conv_channels,
    upsample: Annotated[Literal["subpixel", "transpose"], typer.Option(
        help="How the conv decoder doubles resolution: subpixel (3x3 conv + pixel shuffle) or transpose "
             "(4x4 transposed conv).")] = _D.upsample,  # type: ignore[assignment]
    doublings: Annotated[int, typer.Option(help="Times the conv decoder doubles resolution (the encoder halves "
                                                "as often); images need 2^N pixels a side.")] = _D.doublings,
    prior: Annotated[Literal["learned", "standard"], typer.Option(help="p(z|y) in training.")] = _D.prior,  # type: ignore[assignment]
    likelihood: Annotated[Literal["auto", "bernoulli", "gaussian"], typer.Option(
        help="p(x|z,y): auto takes Bernoulli for grey images, a Gaussian with the optimal shared variance "
             "for colour.")] = _D.likelihood,  # type: ignore[assignment]
    epochs: Annotated[int | None, typer.Option(
        help="Epochs to train (in total, when resuming). Default: sized from the data (about 1,000,000 examples "
             "seen, 40-200 epochs), stopped early by --patience.")] = _D.epochs,
    patience: Annotated[int | None, typer.Option(help="Stop after this many epochs without a better validation "
        "ELBO; the best checkpoint is kept (0: never; default: 20 or a quarter of the plan).")] = _D.patience,
    batch_size: Annotated[int, typer.Option(help="Minibatch size (global, split over --nproc).")] = _D.batch_size,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = _D.lr,
    lr_schedule: Annotated[Literal["cosine", "constant"], typer.Option(
        help="cosine: decay to lr/20 over the planned epochs.")] = _D.lr_schedule,  # type: ignore[assignment]
    beta: Annotated[float, typer.Option(help="Weight of the KL term.")] = _D.beta,
    binarize: Annotated[bool, typer.Option(help="Dynamically binarise training images.")] = _D.binarize,
    augment: Annotated[Literal["auto", "shift", "flip", "none"], typer.Option(
        help="auto (flip for colour, none for grey); flip: mirror half the training images left-right; shift: move "
             "half by up to 1/14 of their side in whole pixels; none: as they are. Delays overfitting."
    )] = _D.augment,  # type: ignore[assignment]
    classifier: Annotated[str | None, typer.Option(help="Evaluation classifier (.onnx) for label fidelity (default: "
        "the shipped one if it fits the data, else one fitted on the train split in seconds).")] = None,
    warmup_epochs: Annotated[float, typer.Option(help="Epochs of KL warm-up from 0 to beta.")] = _D.warmup_epochs,
    val_fraction: Annotated[float, typer.Option(help="Share of train data held out (seeded).")] = _D.val_fraction,
    aggregate_components: Annotated[int | None, typer.Option(
        help="Gaussians per label fitted to the aggregate posterior after training (0: off; default: the "
             "aggregate posterior itself, one Gaussian per training image, at most 32,768 in all).")
    ] = _D.aggregate_components,
    adversarial_epochs: Annotated[int | None, typer.Option(
        help="Epochs of the adversarial phase after ELBO training, which fine-tunes the decoder against a "
             "patch discriminator to draw sharp images at the same sampling cost (0: off; default: about "
             "100,000 images seen, 1-10 epochs).")] = _D.adversarial_epochs,
    adversarial_weight: Annotated[float, typer.Option(
        help="Weight of the adversarial phase's GAN term against the reconstruction term.")] = _D.adversarial_weight,
    tensorboard: Annotated[bool, typer.Option(help="Also log every epoch's numbers and sample grid to RUN/tensorboard "
                                                   "(needs tensorboard).")] = _D.tensorboard,
    precision: Annotated[Literal["auto", "fp32", "bf16"], typer.Option(
        help="Training arithmetic: bf16 is bfloat16 mixed precision; auto takes it for images above 32x32 colour "
             "on a CPU with native bfloat16, else fp32.")] = _D.precision,  # type: ignore[assignment]
    time_limit: Annotated[float, typer.Option(help="Minutes for the run and its export: planned epochs are cut to "
        "fit, --epochs and --adversarial-epochs are not (0: no limit).")] = _D.time_limit,
    seed: Annotated[int, typer.Option(help="Seed for init, split, batch order and noise.")] = _D.seed,
    device: Annotated[Literal["cpu", "cuda", "auto"], typer.Option(
        help="Training device.")] = _D.device,  # type: ignore[assignment]
    backend: Annotated[str, typer.Option(help="Training backend (entry-point name).")] = "torch",
    mirror: Annotated[str | None, typer.Option(help="Base URL of an MNIST mirror for --data mnist.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    nproc: Annotated[int, typer.Option(help="Data-parallel processes on this machine (DDP under torchrun; "
                                            "gloo on CPU, NCCL on GPU).")] = 1,
    quiet: Annotated[bool, typer.Option(help="No progress bar and no per-epoch lines.")] = False,
) -> None:
    """Train a CVAE; writes checkpoints, metrics.jsonl, loss_curve.png and classifier.onnx into --out."""
    from cvae_sdk.backends import get_backend

    options = locals()  # every option named after a TrainConfig field sets that field
    config = TrainConfig(**{**{f.name: options[f.name] for f in fields(TrainConfig) if f.name in options},
                            "out": str(out)})
    if nproc != 1:
        launch = capability(backend, "launch")
        status = launch(config, nproc=nproc, resume=resume, progress=_progress_enabled(quiet))
        if status != 0:
            raise typer.Exit(status)
        return
    result = get_backend(backend).train(config, resume=resume, progress=_progress_enabled(quiet))
    if result.primary:
        typer.echo(json.dumps(result.summary()))


@app.command()
@friendly_errors
def export(
    source: Annotated[Path, typer.Argument(metavar="SOURCE",
                                           help="Run folder (its best checkpoint) or a .pt checkpoint.")],
    out: Annotated[Path, typer.Option(help="Artifact to write (.onnx).")],
    prior: Annotated[Literal["auto", "aggregate", "learned", "standard"], typer.Option(
        help="Prior to ship: auto takes the aggregate-posterior fit when the run has one.")] = "auto",
    temperature: Annotated[float | None, typer.Option(
        help="Sampling temperature stored in the artifact. Default: one per class, calibrated with the run's "
             "evaluation classifier (the largest that keeps the class's label fidelity).")] = None,
    contrast: Annotated[float | None, typer.Option(
        help="Output contrast: the decoder's logits times this before the sigmoid, folded into its last layer "
             "(no sampling cost). Default: chosen with the run's classifier on its training images; 1: the "
             "decoder as trained.")] = None,
    allow_low_fidelity: Annotated[bool, typer.Option(
        help="Export even when the run's classifier recognises the requested label in under half as many "
             "samples as real images (a model that does not draw its classes yet).")] = False,
    backend: Annotated[str, typer.Option(help="Training backend that made the run.")] = "torch",
    int8: Annotated[bool, typer.Option(help="Also write an int8 artifact (static quantisation) beside --out, "
                                            "if it keeps label fidelity within 0.3 points.")] = False,
    fp16: Annotated[bool, typer.Option(help="Also write a float16 artifact (a GPU lever) beside --out, "
                                            "if it keeps label fidelity within 0.3 points.")] = False,
    classifier: Annotated[Path | None, typer.Option(help="Evaluation classifier for the int8/fp16 gate.")] = None,
    data: Annotated[str | None, typer.Option(help="Dataset whose shipped classifier gates int8/fp16.")] = None,
) -> None:
    """Export the generative path (prior + decoder) to one ONNX file, after a parity check."""
    from cvae_sdk.artifact import variant_path
    from cvae_sdk.backends import get_backend
    from cvae_sdk.generator import Generator

    variants = [name for name, wanted in (("int8", int8), ("fp16", fp16)) if wanted]
    clf = _gate_classifier(classifier, data, source) if variants else None  # fail before any work
    options: dict[str, Any] = {"prior": prior, "temperature": temperature}
    if contrast is not None:  # only when asked: a backend without the options still exports
        options["contrast"] = contrast
    if allow_low_fidelity:
        options["allow_low_fidelity"] = True
    path = get_backend(backend).export(source, out, **options)
    summary: dict[str, Any] = {"artifact": str(path), "bytes": path.stat().st_size}
    config = Generator.from_pretrained(path, providers=["CPUExecutionProvider"]).config
    if config.class_temperatures is not None:
        summary["class_temperatures"] = dict(zip(config.class_names, config.class_temperatures, strict=True))
    else:
        summary["temperature"] = config.default_temperature
    summary["output_contrast"] = config.output_contrast
    summary["prior_components"] = int((config.prior.weights > 0).sum())
    if "prior_codes_dropped" in config.metrics:  # codes the run's classifier misread, out of the prior
        summary["prior_codes_dropped"] = config.metrics["prior_codes_dropped"]
    refused = []
    for variant in variants:  # a variant that fails its gate is not written; the float32 artifact stays
        target = variant_path(path, variant)
        try:
            gate = capability(backend, "quantize")(path, target, clf, variant=variant)
        except ValueError as err:
            summary[variant] = {"refused": str(err)}
            refused.append(f"error: {err}")
            continue
        summary[variant] = {"artifact": str(target), **gate, "bytes": target.stat().st_size}
    typer.echo(json.dumps(summary))
    if refused:
        typer.echo("\n".join(refused), err=True)
        raise typer.Exit(EXIT_USAGE)


def _gate_classifier(classifier: Path | None, data: str | None, source: Path) -> Any:
    from cvae_sdk.quality import EvalClassifier, default_classifier, run_classifier_path

    run_classifier = run_classifier_path(source)
    if classifier is None and data is None and run_classifier.is_file():
        classifier = run_classifier
    if classifier is not None:
        return EvalClassifier.load(classifier)
    if data is None:
        raise ValueError("--int8/--fp16 need --classifier CLF.onnx (or --data PATH to use the shipped "
                         "classifier) for their accuracy gate; runs trained by this version keep one")
    from cvae_sdk.data import open_dataset

    return default_classifier(open_dataset(data))


@app.command()
@friendly_errors
def sample(
    out: Annotated[Path, typer.Option(help=".png grid, .npy (streamed) or .npz arrays.")],
    label: Annotated[list[str], typer.Option("--label", metavar="LABEL",
                                             help="Label id or class name; repeat for several.")],
    model: Annotated[Path | None, typer.Option(help="Artifact (.onnx); default: the shipped model.")] = None,
    variant: VariantOption = None,
    n: Annotated[int, typer.Option(help="Samples per label.")] = 16,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same samples.")] = 0,
    temperature: Annotated[float | None, typer.Option(help="Prior spread (default: the artifact's).")] = None,
    dtype: Annotated[Literal["float32", "uint8"], typer.Option(help="Array dtype for .npy/.npz.")] = "float32",
    shard: Annotated[str | None, typer.Option("--shard", metavar="K/N", help="Write only shard K of N (.npy).")] = None,
    columns: Annotated[int | None, typer.Option(help="PNG: images per row (default --n: one row per label).")
                       ] = None,
    scale: Annotated[int, typer.Option(help="PNG: enlarge every image this many times.")] = 2,
    threads: Annotated[int | None, typer.Option(help="onnxruntime intra-op threads.")] = None,
    provider: Annotated[list[str] | None, typer.Option(
        "--provider", metavar="PROVIDER", help="Execution provider; repeat for several (default: auto).")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Sample N images per label from a model and write them to --out."""
    from cvae_sdk.generator import Generator
    from cvae_sdk.labels import text_label
    from cvae_sdk.writers import write_samples

    gen = Generator.from_pretrained(model, variant=variant, providers=provider or "auto", threads=threads)
    labels = [text_label(x, gen.config.class_names) for x in label]
    summary = write_samples(gen, out, labels, n, seed=seed, temperature=temperature, dtype=dtype,
                            shard=shard, progress=_progress_enabled(quiet), columns=columns, scale=scale)
    typer.echo(json.dumps(summary))


@app.command()
@friendly_errors
def info(
    model: ShippedOrModel = None,
    variant: VariantOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full metadata as JSON.")] = False,
) -> None:
    """Print an artifact's metadata and the execution providers available here."""
    import onnxruntime as ort

    from cvae_sdk.generator import Generator

    gen = Generator.from_pretrained(model, variant=variant, providers=["CPUExecutionProvider"])
    doc = json.loads(gen.config.to_json())
    doc["model_path"] = str(gen.model_path)
    doc["output_contrast"] = gen.config.output_contrast  # 1.0 (the decoder as trained) is left out of the file
    doc["available_providers"] = ort.get_available_providers()
    doc["sampling_providers"] = _sampling_providers(gen.model_path, doc["available_providers"])
    if as_json:
        typer.echo(json.dumps(doc))
        return
    prior = doc.pop("prior")
    doc["prior"] = {"source": prior["source"], "components_per_class": len(prior["weights"][0])}
    for key in ("model_path", "format_version", "num_classes", "class_names", "latent_dim", "sample_shape",
                "prior", "default_temperature", "class_temperatures", "output_contrast", "quantization",
                "weights_sha256", "versions",
                "metrics", "model_config", "sampling_providers", "available_providers"):
        typer.echo(f"{key:>20}: {json.dumps(doc.get(key))}")


def _sampling_providers(model: Path, available: list[str]) -> list[str]:
    """The providers a session on this model really runs on: listed is not loaded (onnxruntime-gpu without
    a GPU lists CUDA and falls back to CPU), and the others listed (Azure, ...) do not sample."""
    import onnxruntime as ort

    usable: list[str] = []
    for name in ("CUDAExecutionProvider", "CPUExecutionProvider"):
        if name in available:
            options = ort.SessionOptions()
            options.log_severity_level = 4
            session = ort.InferenceSession(str(model), options, providers=[name])
            if session.get_providers()[0] == name:
                usable.append(name)
    return usable


@app.command()
@friendly_errors
def validate(
    model: Annotated[Path, typer.Argument(metavar="MODEL",
                                          help="Any .onnx file to check against the artifact contract.")],
) -> None:
    """Check a model against the artifact contract (metadata, signature, real runs); exit 1 if it fails."""
    from cvae_sdk.validate import validate_artifact

    report = validate_artifact(model)
    for check in report.checks:
        typer.echo(f"{'ok' if check.ok else 'FAIL':>4}  {check.name:<18} {check.detail}")
    typer.echo(report.to_json())
    if not report.ok:
        raise typer.Exit(1)


@app.command()
@friendly_errors
def wrap(
    source: Annotated[Path, typer.Argument(metavar="SOURCE",
                                           help="A decoder trained elsewhere, as ONNX: (z, one-hot y) -> pixels.")],
    out: Annotated[Path, typer.Option(help="Artifact to write (.onnx).")],
    sample_shape: Annotated[str, typer.Option(help="C,H,W of one sample, e.g. 1,28,28.")],
    class_names: Annotated[str | None, typer.Option(help="Comma-separated names, in y's column order.")] = None,
    num_classes: Annotated[int | None, typer.Option(help="Number of classes, named 0..K-1.")] = None,
    z_input: Annotated[str | None, typer.Option(help="Name of the latent input (default: guessed by width).")] = None,
    y_input: Annotated[str | None, typer.Option(help="Name of the one-hot label input.")] = None,
    output: Annotated[str | None, typer.Option(help="Name of the pixel output, if there are several.")] = None,
    logits: Annotated[bool, typer.Option(help="The output is logits: append a Sigmoid.")] = False,
    temperature: Annotated[float, typer.Option(help="Default sampling temperature stored in the artifact.")] = 1.0,
) -> None:
    """Wrap a foreign decoder as an artifact with a N(0, I) prior per label; validated before it is written."""
    from cvae_sdk.wrap import wrap_decoder

    if (class_names is None) == (num_classes is None):
        raise ValueError("pass exactly one of --class-names a,b,c or --num-classes K")
    names = class_names.split(",") if class_names is not None else [str(i) for i in range(num_classes or 0)]
    try:
        shape = [int(part) for part in sample_shape.split(",")]
    except ValueError:
        raise ValueError(f"--sample-shape must be C,H,W integers, got {sample_shape!r}") from None
    path = wrap_decoder(source, out, class_names=names, sample_shape=shape, z_input=z_input, y_input=y_input,
                        output=output, logits=logits, temperature=temperature)
    typer.echo(json.dumps({"artifact": str(path), "bytes": path.stat().st_size}))


@app.command()
@friendly_errors
def sampler(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="Artifact (.onnx) whose prior and decoder to join.")],
    out: Annotated[Path, typer.Option(help="Sampler graph to write (.onnx).")],
) -> None:
    """Write the whole sampler (labels, noise and temperatures in, images out) as one ONNX graph, for
    onnxruntime clients without Python; checked against Generator.generate before it is written."""
    from cvae_sdk.sampler_graph import write_sampler

    path = write_sampler(model, out)
    typer.echo(json.dumps({"sampler": str(path), "bytes": path.stat().st_size}))


@app.command()
@friendly_errors
def evaluate(
    source: Annotated[Path, typer.Argument(metavar="SOURCE", help="Artifact (.onnx), run folder or checkpoint (.pt).")],
    data: Annotated[str, typer.Option(help="Dataset with a test split (IDX folder, .npz or 'mnist').")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the full JSON report here.")] = None,
    sheet: Annotated[Path | None, typer.Option(help="PNG sheet: real vs generated per label "
                                                    "(default: beside --json).")] = None,
    classifier: Annotated[Path | None, typer.Option(help="Evaluation classifier (.onnx); default: "
                                                         "the shipped one when it matches the data.")] = None,
    samples_per_label: Annotated[int, typer.Option(help="Generated samples per label.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed for sampling and the likelihood estimate.")] = 0,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature (default: the artifact's).")] = None,
    k: Annotated[int, typer.Option(help="Importance samples for -log p(x|y) (runs and checkpoints).")] = 1000,
    likelihood_images: Annotated[int | None, typer.Option(help="Use only the first N test images for "
                                                               "the likelihood.")] = None,
    binarized: Annotated[bool, typer.Option(help="Likelihood on dynamically binarised test images.")] = False,
    likelihood: Annotated[bool, typer.Option(help="Compute the likelihood (runs and checkpoints).")] = True,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Measure label fidelity, realism and diversity (and, for a run, the likelihood)."""
    from cvae_sdk.data import open_dataset
    from cvae_sdk.generator import Generator
    from cvae_sdk.images import write_png
    from cvae_sdk.quality import comparison_sheet, evaluate_generator, find_classifier

    dataset = open_dataset(data)
    if dataset.test is None:
        raise ValueError(f"{data} has no test split; evaluation needs held-out test images")
    with _artifact_for(source, temperature) as model_path:
        gen = Generator.from_pretrained(model_path, providers=["CPUExecutionProvider"])
        run_dir = (gen.config.train_config or {}).get("out")
        clf = find_classifier(source, dataset, classifier, Path(run_dir) if run_dir else None)
        clf.check_fits(gen.config.sample_shape, gen.config.class_names, dataset.test)
        report: dict[str, Any] = {"source": str(source), "data": dataset.source, "classifier": str(clf.path)}
        report.update(evaluate_generator(gen, dataset.test, clf, samples_per_label=samples_per_label,
                                         seed=seed, temperature=temperature))
        sheet = sheet or (json_out.with_suffix(".png") if json_out is not None else None)
        if sheet is not None:
            write_png(sheet, comparison_sheet(gen, dataset.test, seed=seed, temperature=temperature))
            report["sheet"] = str(sheet)
    if source.suffix != ".onnx":  # a run: how close its decoder alone comes to real images
        names = [row["class"] for row in report["per_class"]]
        report["reconstruction"] = _reconstruction_scores(source, dataset, clf, names, samples_per_label, seed,
                                                          gen.config.output_contrast)
    if likelihood and source.suffix != ".onnx":
        likelihood_report = capability("torch", "likelihood_report")
        report["likelihood"] = likelihood_report(source, dataset.test, k=k, limit=likelihood_images,
                                                 binarized=binarized, seed=seed, progress=not quiet)
    if json_out is not None:
        from cvae_sdk.atomic import atomic_path

        with atomic_path(json_out) as tmp:
            tmp.write_text(json.dumps(report, indent=1))
    typer.echo(_evaluation_table(report))
    headline = ("label_fidelity", "worst_class_fidelity", "frechet_distance", "frechet_floor", "frechet_ratio",
                "diversity_ratio", "classifier_test_accuracy", "temperature")
    recon = report.get("reconstruction") or {}
    extra = {f"reconstruction_{key}": recon[key] for key in ("frechet_ratio", "diversity_ratio") if key in recon}
    extra |= {f"nll_{prior}": bound["nll"] for prior, bound in (report.get("likelihood") or {}).items()
              if isinstance(bound, dict) and "nll" in bound}
    typer.echo(json.dumps({key: report[key] for key in headline} | extra
                          | {"json": str(json_out) if json_out else None}))


def _reconstruction_scores(source: Path, dataset: Any, clf: Any, class_names: list[str], per_label: int,
                           seed: int, contrast: float) -> dict[str, Any]:
    """The run's reconstructions of up to ``per_label`` training images per class, scored like its samples
    (at the output contrast its samples are drawn with)."""
    from cvae_sdk.quality import reconstruction_pool, score_images, with_contrast

    pool = reconstruction_pool(dataset.train, per_label, len(class_names), seed)
    images = capability("torch", "reconstruct")(source, dataset.train.images[pool], dataset.train.labels[pool])
    images = with_contrast(images, contrast)
    scores = score_images(images, dataset.train.labels[pool], dataset.test, clf, class_names, seed=seed)
    return {"images": int(pool.size), **{k: v for k, v in scores.items() if k != "confusion_matrix"}}


def _evaluation_table(report: dict[str, Any]) -> str:
    """One line per class, then the averages: what `evaluate` prints for a person."""
    lines = [f"{'class':<14}{'fidelity':>10}{'Frechet':>10}{'floor':>8}{'diversity':>11}"]
    for row in report["per_class"]:
        lines.append(f"{row['class'][:13]:<14}{row['fidelity']:>10.3f}{row['frechet']:>10.2f}"
                     f"{row['frechet_floor']:>8.2f}{row['diversity_generated'] / row['diversity_real']:>11.3f}")
    lines.append(f"{'all':<14}{report['label_fidelity']:>10.4f}{report['frechet_distance']:>10.2f}"
                 f"{report['frechet_floor']:>8.2f}{report['diversity_ratio']:>11.3f}")
    lines.append(f"worst class {report['worst_class_fidelity']:.3f}; Frechet / floor {report['frechet_ratio']:.2f}; "
                 f"classifier accuracy on real test images {report['classifier_test_accuracy']:.4f}")
    recon = report.get("reconstruction")
    if recon is not None:
        lines.append(f"reconstructions of {recon['images']} training images (the decoder alone): fidelity "
                     f"{recon['label_fidelity']:.4f}, Frechet / floor {recon['frechet_ratio']:.2f}, diversity "
                     f"{recon['diversity_ratio']:.3f}; the prior's samples add "
                     f"{report['frechet_ratio'] - recon['frechet_ratio']:+.2f} to Frechet / floor")
    for prior, bound in (report.get("likelihood") or {}).items():
        if isinstance(bound, dict) and "nll" in bound:  # one line per prior: the numbers, not a pointer
            elbo = report["likelihood"]["test_elbo"][prior]
            lines.append(f"{prior.replace('_', ' ')}: test ELBO {elbo['elbo']:.2f} nats ({elbo['images']} images); "
                         f"-log p(x|y) {bound['nll']:.2f} nats (k={bound['k']}, {bound['images']} images)")
    return "\n".join(lines)


@contextlib.contextmanager
def _artifact_for(source: Path, temperature: float | None) -> Iterator[Path]:
    """An .onnx source as it is; a run or checkpoint exported to a temporary artifact first."""
    if source.suffix == ".onnx":
        yield source
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cvae-eval-") as folder:
        yield capability("torch", "export_for_evaluation")(source, Path(folder), temperature)


@app.command()
@friendly_errors
def classifier(
    data: Annotated[str, typer.Option(help="Dataset with train and test splits.")],
    out: Annotated[Path, typer.Option(help="Classifier artifact to write (.onnx).")],
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 12,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Train the evaluation classifier that `evaluate` uses for fidelity and realism."""
    train_classifier = capability("torch", "train_classifier")
    typer.echo(json.dumps({"classifier": str(out), **train_classifier(data, out, epochs=epochs, seed=seed,
                                                                       progress=not quiet)}))


@app.command()
@friendly_errors
def bench(
    model: Annotated[Path | None, typer.Option(help="Artifact (.onnx); default: the shipped model.")] = None,
    int8_model: Annotated[Path | None, typer.Option(help="int8 artifact for the sdk-int8 and openvino-int8 "
                                                        "engines (default: the model's int8 variant, if it has "
                                                        "one).")] = None,
    fp16_model: Annotated[Path | None, typer.Option(help="fp16 artifact for the sdk-cuda-fp16 engine.")] = None,
    threads: Annotated[int, typer.Option(help="Threads for every engine.")] = 2,
    batch: Annotated[list[int] | None, typer.Option(
        "--batch", metavar="N", help="Batch size; repeat for several (default: 1 16 256 4096 65536).")] = None,
    engine: Annotated[list[str] | None, typer.Option(
        "--engine", metavar="ENGINE", help="Engine to run; repeat for several (default: all that apply).")] = None,
    min_seconds: Annotated[float, typer.Option(help="Timed seconds per engine and batch size.")] = 1.0,
    cuda_option: Annotated[list[str] | None, typer.Option(
        "--cuda-option", metavar="KEY=VALUE",
        help="onnxruntime CUDA provider option for the SDK's CUDA engines; repeat for several "
             "(e.g. cudnn_conv_algo_search=EXHAUSTIVE).")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Write bench.json and bench.png here.")] = None,
) -> None:
    """Benchmark sampling: PyTorch eager/compile and OpenVINO vs the SDK (fp32, int8, CUDA), same weights."""
    from cvae_sdk.artifact import variant_path
    from cvae_sdk.bench import BATCHES, format_table, plot, run_benchmark
    from cvae_sdk.generator import model_file

    path = model_file(model)
    beside = variant_path(path, "int8")
    if int8_model is None and beside.is_file():
        int8_model = beside
    options = {}
    for item in cuda_option or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--cuda-option takes KEY=VALUE, got {item!r}")
        options[key] = value
    report = run_benchmark(path, int8_model=int8_model, fp16_model=fp16_model, threads=threads,
                           batches=tuple(batch or BATCHES), engines=tuple(engine) if engine else None,
                           min_seconds=min_seconds, cuda_options=options)
    typer.echo(format_table(report))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        from cvae_sdk.atomic import atomic_path

        with atomic_path(out_dir / "bench.json") as tmp:
            tmp.write_text(json.dumps(report, indent=1) + "\n")
        try:
            plot(report, out_dir / "bench.png")
        except ImportError:
            typer.echo("matplotlib is not installed: no plot", err=True)
    typer.echo(json.dumps(report))


@app.command()
@friendly_errors
def serve(
    model: ShippedOrModel = None,
    variant: VariantOption = None,
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0 picks a free one).")] = 8000,
    max_batch: Annotated[int, typer.Option(help="Rows per shared session run of the micro-batcher.")] = 256,
    max_delay_ms: Annotated[float, typer.Option(help="How long the batcher waits to fill a run (0: it runs what is "
                                                    "queued at once; under load runs fill while one decodes).")] = 0.0,
    max_gap_ms: Annotated[float, typer.Option(help="Within --max-delay-ms, a run starts once no request has "
                                                  "arrived for this long.")] = 0.2,
    max_samples_per_request: Annotated[int, typer.Option(help="Larger requests get 413.")] = 4096,
    max_queue: Annotated[int, typer.Option(help="Requests in flight before new ones get 503.")] = 256,
    max_queued_samples: Annotated[int, typer.Option(
        help="Samples in flight (the work admitted) before new requests get 503; a request alone is always taken.")
    ] = 16_384,
    timeout: Annotated[float, typer.Option(help="Seconds a request may take before a 504.")] = 30.0,
    access_log: Annotated[bool, typer.Option(help="Print one line per request (client, method, path, status).")
                          ] = False,
    threads: Annotated[int | None, typer.Option(help="onnxruntime intra-op threads per worker (default: "
                                                    "onnxruntime's; with workers, the cores shared out).")] = None,
    provider: Annotated[list[str] | None, typer.Option(
        "--provider", metavar="PROVIDER", help="Execution provider; repeat for several (default: auto).")] = None,
    workers: Annotated[int, typer.Option(help="Server processes on the port, each with its own model; the kernel "
                                              "spreads connections over them.")] = 1,
) -> None:
    """Serve a model over HTTP: the API under /v1, a web page at /, /metrics. Needs the serve extra."""
    from cvae_sdk.serving.run import serve as run_server
    from cvae_sdk.serving.settings import ServeSettings

    settings = ServeSettings(max_batch=max_batch, max_delay_ms=max_delay_ms, max_gap_ms=max_gap_ms, max_queue=max_queue,
                             max_queued_samples=max_queued_samples, max_samples_per_request=max_samples_per_request,
                             timeout_s=timeout, access_log=access_log)
    from cvae_sdk.generator import model_file

    run_server(model_file(model, variant), settings, host=host, port=port, threads=threads,
               providers=provider or "auto", announce=lambda line: typer.echo(line), workers=workers)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="cvae-sdk")


if __name__ == "__main__":  # pragma: no cover
    main()
