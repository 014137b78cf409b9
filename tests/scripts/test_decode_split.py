"""scripts/decode.py --nj: a test set split into CPU jobs gives one job's output."""

from pathlib import Path

import pytest
from script_loader import load_script

pytestmark = pytest.mark.slow

SUBSET = "test_eng_asr"


def decode(exp, dump, name, nj, tmp_path, capsys):
    model = tmp_path / name
    model.mkdir(exist_ok=True)
    for f in ("config.yaml", "10epoch.pth"):
        if not (model / f).exists():
            (model / f).symlink_to(exp / f)
    # in this process (nj 1) or as the parent of the job processes (nj 2)
    load_script("decode").main(["--model_dir", str(model), "--model_file", "10epoch.pth", "--dump", str(dump),
                        "--nj", str(nj), SUBSET, "--", "--ngpu", "0", "--beam_size", "3",
                        "--maxlenratio", "0.0", "--ctc_weight", "0.0"])
    return model / f"decode_{SUBSET}", capsys.readouterr().out


def outputs(out: Path):
    return {p.relative_to(out).as_posix(): p.read_text() for p in sorted(out.rglob("*"))
            if p.is_file() and "logdir" not in p.parts and p.name not in ("decode_seconds", ".done")}


def test_two_jobs_equal_one(trained, tiny_corpus, tmp_path, capsys):
    exp, _ = trained
    dump = tmp_path / "dump"
    (dump / SUBSET).mkdir(parents=True)
    lines = (tiny_corpus["valid"] / "wav.scp").read_text().splitlines(keepends=True)
    (dump / SUBSET / "wav.scp").write_text("".join(lines[:5]))
    one, _ = decode(exp, dump, "one", 1, tmp_path, capsys)
    two, stdout = decode(exp, dump, "two", 2, tmp_path, capsys)
    assert "2 jobs of: python -m espnet_ext.bin.s2t_inference" in stdout
    keys = [(two / "logdir" / f"keys.{j}.scp").read_text().splitlines() for j in (1, 2)]
    assert (len(keys[0]), len(keys[1])) == (2, 3)  # 5 utterances, contiguous parts
    a, b = outputs(one), outputs(two)
    assert {"1best_recog/text", "1best_recog/token_int", "1best_recog/score", "gflops",
            "gates/encoder", "gates/decoder", "gates/units"} <= set(a)
    assert a == b
    assert len(b["1best_recog/text"].splitlines()) == 5
    # a rerun skips the finished jobs (their .done) and merges the same files again
    logs = [two / "logdir" / f"decode.{j}.log" for j in (1, 2)]
    stamps = [log.stat().st_mtime_ns for log in logs]
    (two / ".done").unlink()
    (two / "1best_recog" / "text").unlink()
    again, _ = decode(exp, dump, "two", 2, tmp_path, capsys)
    assert outputs(again) == b
    assert [log.stat().st_mtime_ns for log in logs] == stamps  # no job started again
