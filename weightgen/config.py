"""The config base of weightgen's stages: gan's dict round trip and checks, raising WeightgenError.

Every stage config (pairs, zoo, generator, fine-tune, bench, pipeline) is a dataclass on this base,
validated in `__post_init__` with a message that echoes the bad value. The modules that define them
import no torch, so the CLI reads their defaults and choices for `--help` cheaply.
"""

from __future__ import annotations

from typing import ClassVar

from gan.config import Config as _GanConfig
from weightgen.errors import WeightgenError


class Config(_GanConfig):
    error: ClassVar[type[Exception]] = WeightgenError
