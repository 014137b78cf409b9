"""Bad model inputs: wrong-sized context npys, unknown <lang>/<task> tokens, bad YAML.

Each must fail with one line that names the key and what to do.
"""

import pytest
import torch
from espnet2.tasks.s2t import S2TTask

import espnet_ext

espnet_ext.register()


@pytest.fixture(scope="module")
def spk_model(tiny_corpus, tiny_config):
    args = S2TTask.get_parser().parse_args([
        "--config", str(tiny_config), "--token_list", str(tiny_corpus["tokens"]),
        "--output_dir", "unused",
        "--encoder_conf", "gate_context=[lang,task,spk]", "--encoder_conf", "spk_embed_dim=16",
    ])
    return S2TTask.build_model(args).eval()


def ids(model, *tokens):
    return torch.tensor([[model.token_list.index(t) for t in tokens]])


def test_wrong_sized_npy_names_key_and_both_dims(spk_model):
    tokens = ids(spk_model, "<deu>", "<st_eng>")
    spk_model.make_context(tokens, spk_embed=torch.zeros(1, 16))  # right size: fine
    with pytest.raises(ValueError) as e:
        spk_model.make_context(tokens, spk_embed=torch.zeros(1, 12))
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("spk_embed: the batch's vectors have size [12] but "
                          "encoder_conf.spk_embed_dim is 16"), msg
    # one short npy in a padded batch: ESPnet's collate pads it to 16; its length tells
    with pytest.raises(ValueError, match=r"size \[12\] but encoder_conf.spk_embed_dim is 16"):
        spk_model.make_context(torch.cat([tokens, tokens]), spk_embed=torch.zeros(2, 16),
                               embed_lengths={"spk": torch.tensor([16, 12])})


def test_missing_npy_names_the_data_option(spk_model):
    with pytest.raises(ValueError, match=r"no 'spk_embed': pass --train_data_path_and_name_and_type"
                                         r" <dump>/spk_embed.scp,spk_embed,npy"):
        spk_model.make_context(ids(spk_model, "<eng>", "<asr>"))


@pytest.mark.parametrize("first_two", [("<asr>", "<eng>"), ("<unk>", "<asr>"), ("<eng>", "<eng>"),
                                       ("<na>", "<asr>"), ("<eng>", "<notimestamps>")])
def test_text_not_starting_with_lang_task_is_refused(spk_model, first_two):
    with pytest.raises(ValueError, match=r"text must start with a <lang> and a <task> token .* "
                                         r"found \['" + first_two[0]):
        spk_model.make_context(ids(spk_model, *first_two), spk_embed=torch.zeros(1, 16))


def parse_error(tiny_corpus, tmp_path, capsys, config_text: str) -> str:
    """The last stderr line of s2t_train's option parsing with a config (it must fail)."""
    config = tmp_path / "train.yaml"
    config.write_text(config_text)
    with pytest.raises(SystemExit) as e:
        S2TTask.get_parser().parse_args(["--config", str(config), "--token_list",
                                         str(tiny_corpus["tokens"]), "--output_dir", "unused"])
    assert e.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("edit, last_line", [
    (lambda c: c + "foo_bar: 3\n", "error: unrecognized arguments: foo_bar (from "),
    (lambda c: c.replace("\nbatch_size: ", "\nbatch_size: eight #"),
     "error: argument --batch_size: invalid int value: 'eight'"),
])
def test_unknown_yaml_key_or_wrong_type_is_one_line_naming_it(tiny_corpus, tiny_config, tmp_path,
                                                             capsys, edit, last_line):
    text = tiny_config.read_text()
    assert edit(text) != text
    assert last_line in parse_error(tiny_corpus, tmp_path, capsys, edit(text))


@pytest.mark.parametrize("override, names", [
    ("foo_bar=3", "unexpected keyword argument 'foo_bar' (check the *_conf keys of --config)"),
    ("cgmlp_conv_kernel=wide", "cgmlp_conv_kernel"),
])
def test_bad_nested_conf_entry_is_one_line_naming_it(tiny_corpus, tiny_config, tmp_path,
                                                     override, names):
    """Keys inside encoder_conf only fail when ESPnet builds the model: still one line."""
    import subprocess
    import sys

    from tiny_corpus import train_args

    cmd = [sys.executable, "-m", "espnet_ext.bin.s2t_train"]
    cmd += train_args(tiny_corpus, tiny_config, tmp_path / "exp")
    cmd += ["--encoder_conf", override]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("s2t_train: error: ") and names in last, last
    assert "Traceback" not in proc.stderr
