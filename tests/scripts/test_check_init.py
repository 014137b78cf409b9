"""scripts/check_init.py --task asr: a gated ASR model from a base ASR state dict."""

from pathlib import Path

import pytest
import torch
from espnet2.tasks.asr import ASRTask

from script_loader import load_script

check_init = load_script("check_init")

CONF = Path(__file__).resolve().parents[2] / "egs2/librispeech_100/asr1/conf/tiny"
TOKENS = ["<blank>", "<unk>"] + [chr(ord("A") + i) for i in range(10)] + ["<sos/eos>"]


def test_asr_base_initialises_the_gated_asr_model(tmp_path, capsys, caplog):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(TOKENS) + "\n")
    train = ["--token_list", str(tokens), "--output_dir", str(tmp_path / "x")]
    args = ASRTask.get_parser().parse_args(["--config", str(CONF / "train_asr_transformer.yaml"), *train])
    state = ASRTask.build_model(args).state_dict()  # the base: a stock ESPnet ASR model
    torch.save(state, tmp_path / "base.pth")
    gated = ["--", "--config", str(CONF / "train_asr_transformer_gated.yaml"), *train,
             "--encoder_conf", "gate_predictor=local"]
    caplog.set_level("INFO")
    check_init.main(["--task", "asr", "--init", str(tmp_path / "base.pth"), *gated])
    assert f"-> ESPnetASRGatedModel: {len(state)} tensors loaded; new (gate) tensors:" in caplog.text
    key = "encoder.encoders.0.self_attn.linear_q.weight"
    state["encoder.encoders.0.self_attn.q.weight"] = state.pop(key)  # renamed: would stay random
    torch.save(state, tmp_path / "renamed.pth")
    with pytest.raises(SystemExit):
        check_init.main(["--task", "asr", "--init", str(tmp_path / "renamed.pth"), *gated])
    err = capsys.readouterr().err
    assert f"missing ['{key}'] (1), unexpected ['encoder.encoders.0.self_attn.q.weight'] (1)" in err
