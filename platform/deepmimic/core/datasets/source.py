"""Where a data set's files are and how to read them: the YAML's `dataset:` section as plain values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .image_files import ImageFormat


@dataclass(frozen=True)
class Source:
    """A data set to read. The academic readers use `root` alone; users' own data uses the rest."""

    name: str
    root: Path | None = None
    train: tuple[str, ...] = ()          # Parquet files or globs (local or s3://, gs://)
    test: tuple[str, ...] = ()
    unlabeled: str | None = None         # the student pool: a folder of images or Parquet files/globs
    test_ratio: float | None = None      # a stratified part of train held out where no test set is given
    image: ImageFormat = ImageFormat()
    image_column: str = "image"
    label_column: str = "label"
    class_names: tuple[str, ...] | None = None
    skip_unreadable: bool = False        # a pool's unreadable files are counted and skipped, not fatal

    @property
    def held_out_ratio(self) -> float:
        return 0.2 if self.test_ratio is None else self.test_ratio
