"""Command-line flags: underscores as in ESPnet, dashed spellings kept as aliases."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    [*ROOT.glob("espnet_ext/bin/*.py"), *ROOT.glob("scripts/*.py"), *ROOT.glob("scripts/bench/*.py"),
     *ROOT.glob("local/*/*.py"),
     *ROOT.glob("egs2/*/*/local/*.py")]
)


def _options(path):
    """(line, option strings) of every add_argument call with long options."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            names = [a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("--")]
            if names:
                yield node.lineno, names


def test_sources_found():
    assert len(SOURCES) > 30 and sum(1 for p in SOURCES for _ in _options(p)) > 200


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_first_name_has_underscores_and_dashes_are_aliases(path):
    for line, names in _options(path):
        assert "-" not in names[0][2:], f"{path.name}:{line}: {names[0]} (use underscores, dashes as an alias)"
        for alias in names[1:]:
            assert "--" + alias[2:].replace("-", "_") == names[0], f"{path.name}:{line}: {names}"


def test_dashed_alias_parses_to_the_same_option():
    from espnet_ext.bin import profile

    parser = profile.get_parser()
    model = ["--model", "a=c.yaml:m.pth", "--reference", "a", "--lang_sym", "deu", "--task_sym", "asr"]
    a = parser.parse_args([*model, "--data_dir", "d", "--num_utts", "3"])
    b = parser.parse_args([*model, "--data-dir", "d", "--num_utts", "3"])
    assert vars(a) == vars(b) and str(a.data_dir) == "d" and a.num_utts == 3
