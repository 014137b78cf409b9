"""scripts/make_token_list.py --asr: ESPnet's ASR token list (asr.sh stage 5), no special tokens."""

import sentencepiece as spm

from script_loader import load_script

make_token_list = load_script("make_token_list")


def test_asr_writes_an_espnet_asr_token_list(tmp_path):
    dirs = []
    for name, lines in (("a", range(30)), ("b", range(30, 50))):
        d = tmp_path / name
        d.mkdir()
        (d / "text").write_text("".join(f"u{i} THE CAT SAT ON THE MAT NUMBER {i % 7}\n" for i in lines))
        (d / "text.ctc").write_text("u0 <zzz> NOT READ\n")  # S2T's source text: not for --asr
        dirs.append(str(d))
    make_token_list.main(["--asr", "--vocab_size", "40", "--out", str(tmp_path / "bpe"), *dirs])
    tokens = (tmp_path / "bpe/tokens.txt").read_text().split("\n")[:-1]
    assert tokens[:2] == ["<blank>", "<unk>"] and tokens[-1] == "<sos/eos>"
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "bpe/bpe.model"))
    # <unk> <s> </s> of sentencepiece -> <blank> <unk> ... <sos/eos>
    assert tokens[2:-1] == [sp.id_to_piece(i) for i in range(3, sp.get_piece_size())]
    assert len(set(tokens)) == len(tokens) <= 40
    assert not any(t.startswith("<") for t in tokens[2:-1])  # no user-defined symbol
    assert (tmp_path / "bpe/train.txt").read_text().count("\n") == 50  # both dirs' text
    assert not (tmp_path / "bpe/nlsyms.txt").exists()
