"""ESPnet's S2T preprocessor with Whisper's tokenizer (``preprocessor: s2t_whisper``).

Everything but the tokenizer is ``S2TPreprocessor``'s (padding or trimming to
``speech_length``, ``<na>`` for absent previous text, timestamp handling). The
token list must be ``espnet_ext.whisper.tokenizer.token_list()``; the YAML's
``token_type`` is not used (write ``word``: ESPnet's own ``whisper_*`` types need
ESPnet's fork of openai-whisper).
"""

from typing import Dict, Union

import numpy as np

from espnet2.train.preprocessor import S2TPreprocessor

from espnet_ext.whisper.tokenizer import WhisperTokenizer


class S2TWhisperPreprocessor(S2TPreprocessor):
    """``S2TPreprocessor`` that tokenizes with ``WhisperTokenizer`` (same arguments)."""

    def __init__(self, train: bool, token_type=None, token_list=None, bpemodel=None, **kwargs):
        super().__init__(train, token_type="word", token_list=token_list, bpemodel=None, **kwargs)
        self.tokenizer = WhisperTokenizer(self.token_id_converter.token_list)

    def _text_process(self, data: Dict[str, Union[str, np.ndarray]], time_shift: int) -> Dict[str, np.ndarray]:
        # S2TPreprocessor drops the first token of `text` (sentencepiece's leading "▁");
        # Whisper has none, so a space token (one token: "Ġ") stands in for it
        if isinstance(data.get(self.text_name), str):
            data[self.text_name] = " " + data[self.text_name]
        return super()._text_process(data, time_shift)
