"""What a request carries (the JSON bodies, checked by pydantic) and what it gets back (.npy, PNG, JSON)."""

from __future__ import annotations

import base64
import io
from typing import Any, Literal

import numpy as np
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from cvae_sdk.images import encode_png, make_image_grid
from cvae_sdk.request import GenerationOutput

Output = Literal["npy", "png", "json"]


class GenerateRequest(BaseModel):
    """Body of ``POST /v1/generate``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    labels: list[int | str] = Field(min_length=1)
    num_samples_per_label: int = 1
    seed: int | None = None
    temperature: float | None = None
    output: Output = "npy"
    dtype: Literal["float32", "uint8"] = "float32"


class InterpolateRequest(BaseModel):
    """Body of ``POST /v1/interpolate``: morph ``start`` into ``end`` in ``steps`` images."""

    model_config = ConfigDict(extra="forbid", strict=True)
    start: int | str
    end: int | str
    steps: int = 8
    seed: int | None = None
    temperature: float | None = None
    output: Output = "png"
    dtype: Literal["float32", "uint8"] = "float32"


def output_type(output: str, dtype: str) -> Literal["np", "uint8"]:
    """PNG and JSON bodies are 8-bit images; .npy is float32 unless uint8 was asked for."""
    return "uint8" if output != "npy" or dtype == "uint8" else "np"


def render(class_names: tuple[str, ...], out: GenerationOutput[Any], output: str, columns: int,
           one_row: bool = False, scale: int = 1) -> Response:
    """The response body: an .npy (labels in ``X-Labels``), a PNG grid of ``columns`` per row (one
    row named start>end for a morph), or JSON with one base64 PNG per sample."""
    names = [class_names[int(i)] for i in out.labels]
    if output == "npy":
        buffer = io.BytesIO()
        np.save(buffer, out.samples, allow_pickle=False)
        return Response(buffer.getvalue(), media_type="application/octet-stream",
                        headers={"X-Labels": ",".join(str(int(i)) for i in out.labels)})
    if output == "png":
        row_names = [f"{names[0]}>{names[-1]}"] if one_row else names[::columns]
        return Response(encode_png(make_image_grid(out.samples, columns, row_labels=row_names, scale=scale)),
                        media_type="image/png")
    images = [base64.b64encode(encode_png(np.ascontiguousarray(img.transpose(1, 2, 0)))).decode()
              for img in out.samples]
    return JSONResponse({"labels": [int(i) for i in out.labels], "class_names": names, "images": images,
                         "shape": list(out.samples.shape[1:])})
