"""scripts/shuffle_keys.py: the key file that ESPnet's unsorted sampler batches in order."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "shuffle_keys.py"


def shuffled(path: Path, seed: int = 0) -> list:
    subprocess.run([sys.executable, str(SCRIPT), "--seed", str(seed), str(path)], check=True)
    return path.read_text().splitlines()


def test_batches_of_consecutive_keys_mix_speakers(tmp_path):
    # Kaldi order: 4 languages x 8 speakers x 8 utterances x 2 tasks, as the mini corpus
    lines = [f"{lang}_spk{s:02d}-u{u}-{task} 112000,1" for lang in ("deu", "eng", "fra", "ita")
             for s in range(8) for u in range(8) for task in ("asr", "st_eng")]
    path = tmp_path / "speech_shape"
    path.write_text("\n".join(lines) + "\n")
    out = shuffled(path)
    assert sorted(out) == sorted(lines)
    first = [line.split("-")[0] for line in out[:32]]  # the first batch of 32
    assert len(set(first)) >= 10 and len({k[:3] for k in first}) == 4
    # the order depends on the seed only, not on the file's order before
    assert shuffled(path) == out
    assert shuffled(path, seed=1) != out
