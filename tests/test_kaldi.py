"""espnet_ext.kaldi.read_table: the one Kaldi-table reader."""

import pytest

from espnet_ext.kaldi import read_table, write_table, write_text


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


def test_write_table_in_byte_order_atomically(tmp_path):
    p = tmp_path / "new" / "wav.scp"  # parent dirs made
    # C order: upper case before lower case, ASCII before the umlaut (UTF-8 bytes)
    write_table(p, {"b": "2", "ä": "4", "a": "1 one", "B": "0"})
    assert p.read_text() == "B 0\na 1 one\nb 2\nä 4\n"
    assert read_table(p) == {"B": "0", "a": "1 one", "b": "2", "ä": "4"}
    write_table(p, [("z", "1"), ("a", "2")], sort=False)  # as given
    assert p.read_text() == "z 1\na 2\n"
    assert sorted(x.name for x in p.parent.iterdir()) == ["wav.scp"]  # no temporary left


def test_write_text_replaces_whole_files(tmp_path):
    p = tmp_path / "f"
    write_text(p, "old\n")
    write_text(p, "new\n")
    assert p.read_text() == "new\n" and [x.name for x in tmp_path.iterdir()] == ["f"]
