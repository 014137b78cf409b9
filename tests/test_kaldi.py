"""espnet_ext.kaldi.read_table: the one Kaldi-table reader."""

import pytest

from espnet_ext.kaldi import read_table


def test_values_with_spaces_in_file_order(tmp_path):
    p = tmp_path / "text"
    p.write_text("b hello world\na  x y \n\nc z\n")
    assert list(read_table(p).items()) == [("b", "hello world"), ("a", "x y"), ("c", "z")]


def test_empty_values_duplicates_and_missing_files(tmp_path):
    p = tmp_path / "text"
    p.write_text("a one\nb\n")
    with pytest.raises(ValueError, match=r"text:2: no value for key 'b'"):
        read_table(p)
    assert read_table(p, allow_empty=True) == {"a": "one", "b": ""}  # e.g. an empty hypothesis
    p.write_text("a one\na two\n")
    with pytest.raises(ValueError, match=r"text:2: duplicated key 'a'"):
        read_table(p)
    assert read_table(tmp_path / "absent", missing_ok=True) == {}
    with pytest.raises(FileNotFoundError):
        read_table(tmp_path / "absent")
