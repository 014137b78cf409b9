"""Kaldi tables (``<key> <value>`` per line): the one reader and writer of data dirs and decoding outputs.

Data dirs (wav.scp, text, utt2spk, *.scp of npy files) and what the decoders write
(1best_recog/text, gates/*, gflops, decode_seconds; read back by
``espnet_ext.results.read_decode``) are all such tables. Values may contain spaces; keys are
unique.
"""

import os
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Mapping, Tuple, Union


def read_table(
    path: Union[str, Path], allow_empty: bool = False, missing_ok: bool = False
) -> "OrderedDict[str, str]":
    """Reads a Kaldi table in file order.

    Args:
        path: The table.
        allow_empty: Accept a key without value ('' then; e.g. an empty hypothesis).
        missing_ok: A missing file reads as an empty table (optional outputs).

    Raises:
        ValueError: On a line without value (unless ``allow_empty``) or a duplicated key.
    """
    table = OrderedDict()
    if missing_ok and not Path(path).is_file():
        return table
    with open(path, encoding="utf-8") as f:
        for num, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            key, _, value = line.partition(" ")
            value = value.strip()
            if not value and not allow_empty:
                raise ValueError(
                    f"{path}:{num}: no value for key {key!r} (give it one or delete the line)"
                )
            if key in table:
                raise ValueError(f"{path}:{num}: duplicated key {key!r} (keep one line per key)")
            table[key] = value
    return table


def write_text(path: Union[str, Path], text: str) -> None:
    """Writes a text file atomically: a crash leaves the old file or the new one, never part of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_table(
    path: Union[str, Path], table: Union[Mapping[str, str], Iterable[Tuple[str, str]]], sort: bool = True
) -> None:
    """Writes a Kaldi table atomically.

    Args:
        path: The table.
        table: key -> value, or (key, value) pairs.
        sort: Keys in C (byte) order, as Kaldi's and ESPnet's tools expect
            (``LC_ALL=C sort``); False: as given.
    """
    items = list(table.items() if isinstance(table, Mapping) else table)
    if sort:  # str order is code point order, i.e. UTF-8 byte order
        items.sort(key=lambda kv: kv[0])
    write_text(path, "".join(f"{k} {v}\n" for k, v in items))

