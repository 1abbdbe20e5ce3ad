"""cvae-sdk: label-conditioned sampling from an exported conditional VAE, on onnxruntime.

The runtime imports numpy and onnxruntime only; training lives in the ``training`` package.
"""

from cvae_sdk.artifact import ArtifactConfig, ArtifactError, Prior
from cvae_sdk.generator import GenerationOutput, Generator, shipped_model_path
from cvae_sdk.providers import ProviderUnavailableError

__version__ = "0.1.0"
__all__ = ["ArtifactConfig", "ArtifactError", "GenerationOutput", "Generator", "Prior",
           "ProviderUnavailableError", "__version__", "shipped_model_path"]
