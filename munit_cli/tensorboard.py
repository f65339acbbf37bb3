"""TensorBoard logging of a run (the optional `[tensorboard]` extra): the loss terms as scalars and
the sample grids as images, in `RUN/tensorboard/`, so `tensorboard --logdir runs` shows every run.

Only the rank that writes the run folder (rank 0) should make a `TensorBoardLog`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from munit_cli.errors import MunitError

LOG_DIR = "tensorboard"
FLUSH_SECONDS = 10  # a live `tensorboard` sees new points this soon (its writer's default is 120 s)


def require() -> type:
    """TensorBoard's writer class, or a clear error when the extra is missing. Creates nothing, so
    training calls it before the run folder is touched."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise MunitError(
            "TensorBoard logging needs the tensorboard package",
            hint="pip install 'munit-cli[tensorboard]', or leave train.tensorboard off",
        ) from None
    return SummaryWriter


class TensorBoardLog:
    def __init__(self, run_dir: Path):
        SummaryWriter = require()
        self.log_dir = Path(run_dir) / LOG_DIR
        self.writer = SummaryWriter(str(self.log_dir), flush_secs=FLUSH_SECONDS)

    def scalars(self, step: int, values: Mapping[str, Any], group: str = "loss") -> None:
        """One scalar per finite number, tagged GROUP/NAME (loss/gen_total, ...); null, NaN and
        non-numbers are left out, as metrics.jsonl leaves them null."""
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.writer.add_scalar(f"{group}/{name}", value, step)

    def image(self, step: int, grid: Any, tag: str = "samples") -> None:
        """A sample grid: a PNG file, or a CHW tensor in the models' [-1, 1] range."""
        if isinstance(grid, (str, Path)):
            import numpy as np
            from PIL import Image

            with Image.open(grid) as img:
                pixels = np.asarray(img.convert("RGB"))
            self.writer.add_image(tag, pixels, step, dataformats="HWC")
        else:
            self.writer.add_image(tag, (grid.detach().float().cpu().clamp(-1, 1) + 1) / 2, step, dataformats="CHW")

    def close(self) -> None:
        self.writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
