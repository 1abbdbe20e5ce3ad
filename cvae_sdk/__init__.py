"""cvae-sdk: label-conditioned sampling from an exported conditional VAE, on onnxruntime.

The runtime imports numpy and onnxruntime only; training lives in ``cvae_sdk_training``, reached
through the ``cvae_sdk.training_backends`` entry point.
"""

try:
    import onnxruntime  # noqa: F401  (the one runtime dependency an install can lack)
except ImportError as err:
    raise ImportError("cvae-sdk needs onnxruntime: pip install 'cvae-sdk[cpu]', or 'cvae-sdk[gpu]' on NVIDIA "
                      "GPUs (one of the two: they share a folder and break each other)") from err

from cvae_sdk.artifact import ArtifactConfig, ArtifactError, Prior  # noqa: E402
from cvae_sdk.generator import Generator, shipped_model_path
from cvae_sdk.images import make_image_grid, write_png
from cvae_sdk.providers import ProviderUnavailableError
from cvae_sdk.request import GenerationOutput

__version__ = "0.1.0"
__all__ = ["ArtifactConfig", "ArtifactError", "GenerationOutput", "Generator", "Prior",
           "ProviderUnavailableError", "__version__", "make_image_grid", "shipped_model_path", "write_png"]
