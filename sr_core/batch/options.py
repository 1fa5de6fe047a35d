"""Batch options, the existing-output policies, output formats and the model label."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .. import formats
from ..errors import FinescaleError
from ..naming import DEFAULT_TEMPLATE, check_template


class ExistingPolicy(StrEnum):
    """What to do when a file's output already exists."""

    SKIP = "skip"            # leave it, skip the input
    OVERWRITE = "overwrite"  # replace it (only a regular file, never an input)
    NUMBER = "number"        # keep both: the new output gets the next free numbered name


#: The policies' words, for messages and option lists.
POLICIES: tuple[str, ...] = tuple(p.value for p in ExistingPolicy)

#: The output format option that keeps each input's own format.
SAME_FORMAT = "same"

#: Output format names -> (writer format, extension); "same" keeps each input's format.
OUTPUT_FORMATS: dict[str, tuple[str, str] | None] = {
    SAME_FORMAT: None,
    **{name: (fmt, formats.extension(fmt)[1:]) for name, fmt in formats.OPTION_NAMES.items()},
}


@dataclass(frozen=True)
class BatchOptions:
    """What a batch does with each file.

    Attributes:
        recursive: also convert the images in sub-folders (mirrored under the output folder).
        template: output name template (fields in :data:`sr_core.naming.TEMPLATE_FIELDS`).
        format: ``"same"`` as the input, or ``"png"``, ``"jpeg"``, ``"webp"``, ``"tiff"``,
            ``"bmp"``.
        existing: an :class:`ExistingPolicy` (or its word): when the output exists,
            ``"skip"`` it, ``"overwrite"`` it, or ``"number"`` (keep both; the new one is
            named ``..._2.ext``).
        quality: JPEG / WebP quality, 1..100.
        scale, width, height: at most one; the output size (default: the model's scale).
        resume: continue an interrupted batch recorded in the output folder's report.
    """

    recursive: bool = False
    template: str = DEFAULT_TEMPLATE
    format: str = SAME_FORMAT
    existing: ExistingPolicy | str = ExistingPolicy.SKIP
    quality: int = 95
    scale: float | None = None
    width: int | None = None
    height: int | None = None
    resume: bool = True

    def __post_init__(self) -> None:
        # Callers (the CLI, the window's settings) pass the policy's word; an unknown word
        # stays as given so that validate() can name it in its sentence.
        if self.existing in POLICIES and not isinstance(self.existing, ExistingPolicy):
            object.__setattr__(self, "existing", ExistingPolicy(self.existing))

    def validate(self) -> None:
        """Raise a one-sentence :class:`FinescaleError` for an unusable option."""
        if self.format.lower() not in OUTPUT_FORMATS:
            raise FinescaleError(f"Output format '{self.format}' is not one of "
                                 f"{', '.join(OUTPUT_FORMATS)}.")
        if self.existing not in POLICIES:
            raise FinescaleError(f"Policy for existing outputs '{self.existing}' is not one of "
                                 f"{', '.join(POLICIES)}.")
        if not 1 <= self.quality <= 100:
            raise FinescaleError(f"Quality {self.quality} is outside 1..100.")
        if sum(v is not None for v in (self.scale, self.width, self.height)) > 1:
            raise FinescaleError("Give at most one of scale, width and height.")
        if self.scale is not None and not (self.scale > 0 and math.isfinite(self.scale)):
            raise FinescaleError(f"Scale {self.scale} is not a positive number.")
        for name, v in (("Width", self.width), ("Height", self.height)):
            if v is not None and v < 1:
                raise FinescaleError(f"{name} {v} is not a positive number of pixels.")
        check_template(self.template)


@dataclass(frozen=True)
class ModelLabel:
    """What output names need to know about the model: its short name and scale."""

    name: str
    scale: int

    @classmethod
    def of(cls, model: Any) -> ModelLabel:
        """The label of a ModelLabel, an SRModel (``.name``, ``.scale``) or an Upscaler."""
        if isinstance(model, ModelLabel):
            return model
        model = getattr(model, "model", model)  # an Upscaler holds its SRModel
        scale = int(model.scale)
        # "HPINet-M x4" -> "HPINet-M": the scale has its own field.
        name = re.sub(rf"\s*[x×]{scale}$", "", str(model.name)).strip()
        name = re.sub(r"[^\w.+-]+", "-", name).strip("-.") or "model"
        return cls(name, scale)

