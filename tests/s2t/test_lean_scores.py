"""LeanBeamSearch's per-scorer scores equal ESPnet's scorers' batch scores."""

import torch
from espnet2.bin.s2t_inference import ScoreFilter

from espnet_ext.s2t.lean_search import LeanBeamSearch

SOS, EOS, NOTIME, FIRST, LAST, VOCAB = 1, 2, 3, 10, 20, 30


def test_score_filter_matches_espnet_on_every_rule():
    f = ScoreFilter(notimestamps=NOTIME, first_time=FIRST, last_time=LAST, sos=SOS, eos=EOS, vocab_size=VOCAB)
    lean = LeanBeamSearch(None, 3, EOS, {"decoder": 1.0, "length_bonus": 0.5, "scorefilter": 1.0},
                          score_filter=f)
    ys = torch.tensor([
        [SOS, 5, 6, NOTIME, 7, 8],   # no timestamps: timestamp tokens barred
        [5, 6, 7, SOS, 8, 9],        # predict_time, y[-3] == sos: a timestamp must come first
        [SOS, 5, 6, 12, 7, 8],       # an open segment: no eos, later timestamps only
        [SOS, 5, 12, 7, 8, 15],      # segment closed by a timestamp: timestamp >= 15 or eos
        [SOS, 5, 12, 7, 15, 8],      # closed segment then a token: illegal
    ])
    logp = torch.randn(len(ys), VOCAB).log_softmax(-1)
    scores = lean._scores(ys, logp)
    ref, _ = f.batch_score(ys, [None] * len(ys), [None] * len(ys))
    assert torch.equal(scores["scorefilter"], ref)
    assert torch.isinf(scores["scorefilter"][0, FIRST : LAST + 1]).all()
    assert torch.equal(scores["decoder"], logp)
    assert torch.equal(scores["length_bonus"], torch.ones_like(logp))


def test_end_detection_follows_espnet():
    from espnet.nets.e2e_asr_common import end_detect

    ended = [dict(yseq=[0] * n, score=s) for n, s in [(5, -1.0), (6, -12.0), (7, -13.0), (8, -30.0)]]
    best = {}
    for h in ended:
        best[len(h["yseq"])] = max(best.get(len(h["yseq"]), -1e9), h["score"])
    for i in range(4, 12):
        assert LeanBeamSearch._end_detect(best, i) == end_detect(ended, i), i
    assert LeanBeamSearch._end_detect(best, 8) and not LeanBeamSearch._end_detect(best, 7)
