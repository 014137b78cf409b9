"""scripts/retrain.py: finds a model's recorded stage 6-8 commands and re-runs them
for a variant."""

import shlex
import sys

import pytest

from script_loader import load_script

retrain = load_script("retrain")


def record(exp, *commands):
    exp.mkdir(parents=True, exist_ok=True)
    with open(exp / "commands.sh", "a") as f:
        for c in commands:
            f.write(shlex.join(c) + "\n")


def train(exp, model, *extra):
    return ["python3", "-m", "espnet_ext.bin.s2t_train", "--config", "conf/train.yaml",
            "--output_dir", str(exp / model), "--resume", "true", *extra]


def test_finds_the_last_commands_of_the_model(tmp_path):
    exp = tmp_path / "exp"
    stats = ["python3", "-m", "espnet_ext.bin.s2t_train", "--collect_stats", "true",
             "--output_dir", str(exp / "gated")]
    check = ["python3", "scripts/check_init.py", "--", "--output_dir", str(exp / "gated")]
    decode = ["python3", "/r/scripts/decode.py", "--model_dir", str(exp / "gated"), "--nj", "1",
              "test_a", "--", "--beam_size", "5"]
    score = ["python3", "/r/scripts/score.py", "--exp", str(exp / "gated"), "test_a"]
    record(exp, stats, train(exp, "gated", "--seed", "0"), check, train(exp, "full"),
           train(exp, "gated"), decode, ["python3", "/r/scripts/decode.py", "--model_dir",
                                          str(exp / "full")], score)
    found = retrain.find_commands((exp / "commands.sh").read_text().splitlines(), exp, "gated")
    assert found == {"train": train(exp, "gated"), "decode": decode, "score": score}

    cmds = retrain.variant_commands(found, exp, "gated_s01", ["--sparsity_end", "0.1"], nj=2)
    assert cmds[0] == train(exp, "gated_s01", "--sparsity_end", "0.1")
    assert cmds[1] == ["python3", "/r/scripts/decode.py", "--model_dir", str(exp / "gated_s01"),
                       "--nj", "2", "test_a", "--", "--beam_size", "5"]
    assert cmds[2] == ["python3", "/r/scripts/score.py", "--exp", str(exp / "gated_s01"), "test_a"]


def test_missing_model_is_a_one_line_error(tmp_path):
    exp = tmp_path / "exp"
    record(exp, train(exp, "full"), train(exp, "gated"))
    with pytest.raises(SystemExit, match="no decode/score command for .*exp/gated"):
        retrain.find_commands((exp / "commands.sh").read_text().splitlines(), exp, "gated")
    with pytest.raises(SystemExit, match="no train/decode/score command"):
        retrain.find_commands([], exp, "gated")


def test_trained_variant_is_decoded_and_scored_only(tmp_path, monkeypatch):
    # The recorded decode/score commands are stand-ins that write what they were given.
    exp = tmp_path / "exp"
    tool = tmp_path / "scripts"
    tool.mkdir()
    for name in ("decode", "score"):
        (tool / f"{name}.py").write_text(
            "import sys, pathlib\n"
            f"pathlib.Path(sys.argv[2], '{name}.args').write_text(' '.join(sys.argv[1:]))\n")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "train.yaml").write_text("{}\n")
    record(exp, train(exp, "gated"),
           [sys.executable, str(tool / "decode.py"), "--model_dir", str(exp / "gated"), "--nj", "1"],
           [sys.executable, str(tool / "score.py"), "--exp", str(exp / "gated")])
    (exp / "gated_seed1").mkdir()
    (exp / "gated_seed1" / "valid.acc.ave.pth").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    retrain.main(["--from_model", "gated", "--name", "gated_seed1", "--", "--seed", "1"])
    out = exp / "gated_seed1"
    assert (out / "decode.args").read_text() == f"--model_dir {out} --nj 1"
    assert (out / "score.args").read_text() == f"--exp {out}"
    # both re-runs recorded after the original three commands; no training run
    lines = (exp / "commands.sh").read_text().splitlines()
    assert len(lines) == 5 and "s2t_train" not in lines[3] + lines[4]

    with pytest.raises(SystemExit, match="must be a new dir name"):
        retrain.main(["--from_model", "gated", "--name", "gated"])
