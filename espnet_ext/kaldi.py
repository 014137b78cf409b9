"""Kaldi tables (``<key> <value>`` per line): the one reader of data dirs and decoding outputs.

Data dirs (wav.scp, text, utt2spk, *.scp of npy files) and what the decoders write
(1best_recog/text, gates/*, gflops, decode_seconds) are all such tables. Values may
contain spaces; keys are unique.
"""

from collections import OrderedDict
from pathlib import Path
from typing import Union


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
