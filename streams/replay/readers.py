"""Reading the replayed file: its header, its rows in chunks, how many rows it has.

CSV (plain or gzipped) and Parquet; pandas reads both, pyarrow only when a Parquet file is
read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]

from streams.replay.mapping import MappingError

CHUNK_ROWS = 20_000


def read_columns(path: Path) -> list[str]:
    """The header of a CSV or Parquet file; :class:`MappingError` for any other file."""
    suffixes = [suffix.lower() for suffix in path.suffixes[-2:]]
    if not (_is_parquet(path) or suffixes[-1:] == [".csv"] or suffixes == [".csv", ".gz"]):
        raise MappingError(f"{path.name}: replay reads .csv, .csv.gz, .parquet or .pq files")
    if _is_parquet(path):
        return [str(name) for name in _parquet().read_schema(path).names]
    return [str(c) for c in pd.read_csv(path, nrows=0).columns]


def read_chunks(path: Path, columns: Sequence[str], chunk_rows: int) -> Iterator[Any]:
    """The file's ``columns`` as DataFrames of at most ``chunk_rows`` rows.

    CSV cells are read as text (the contract decides what they mean, so an identifier such
    as ``007`` keeps its zeros); Parquet cells keep their types.
    """
    if _is_parquet(path):
        frame = pd.read_parquet(path, columns=list(dict.fromkeys(columns)))
        for start in range(0, len(frame), chunk_rows):
            yield frame.iloc[start : start + chunk_rows]
        return
    yield from pd.read_csv(
        path,
        usecols=list(dict.fromkeys(columns)),
        dtype=str,
        keep_default_na=False,
        na_values=[""],
        chunksize=chunk_rows,
    )


def estimated_rows(path: Path) -> int | None:
    """Rows in the file, for a progress bar: exact for Parquet, line count for CSV."""
    if _is_parquet(path):
        return int(_parquet().ParquetFile(path).metadata.num_rows)
    if path.suffix == ".gz":
        return None
    with path.open("rb") as handle:
        lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    return max(lines - 1, 0)


def _parquet() -> Any:
    """pyarrow's Parquet module (pandas' Parquet engine), only when a Parquet file is read."""
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    return pq


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in {".parquet", ".pq"}
