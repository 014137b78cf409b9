"""``espnet_ext.flops`` (analytic MACs) against fvcore's traced count.

fvcore's ``FlopCountAnalysis`` counts one fused multiply-add as one "flop",
i.e. MACs, like ``espnet_ext.flops``. Of the ops in these graphs it counts
``aten::linear``, ``aten::matmul``, ``aten::_convolution`` (conv1d/conv2d) and
``aten::layer_norm`` (5 per element with affine parameters); it skips, with an
"unsupported op" entry, every other elementwise op: add, mul, div, sub,
softmax, sigmoid (swish), gelu, relu, sum (mean pooling), index_add (row
skipping), and embedding lookups (not an op it counts either).
``espnet_ext.flops`` counts linear, conv and the attention products but no
norms, so:

* the linear + matmul + conv part of fvcore's count must equal the analytic
  count exactly (checked with a tiny relative tolerance for float rounding);
* fvcore's total is the analytic count + the LayerNorms: 5 MACs per element
  of each norm, i.e. ~5 * (6 d + cgmlp_units / 2) per frame in an
  E-Branchformer layer against ~8 d * ffn_units + ... of matrix products:
  0.4% here (d = 128), less at OWSM's d = 1024. Hence the 3% tolerance
  (``TOL``) on the total; it also covers what fvcore does not see at all
  (softmax, activations), which is not in either count.

The gate predictor is not run (gates forced or pinned): its cost (one
pooling and one (d + 2 context_dim) x 2L linear per utterance) is not part of
the analytic counts.
"""

import warnings

import pytest
import torch
from fvcore.nn import FlopCountAnalysis

from espnet.nets.pytorch_backend.transformer.mask import subsequent_mask
from espnet.nets.pytorch_backend.transformer.subsampling import Conv2dSubsampling

from espnet_ext import flops
from espnet_ext.gating import force_gates, pin_gates
from espnet_ext.nets.e_branchformer_token_condition import (
    EBranchformerTokenConditionEncoder,
)
from espnet_ext.nets.transformer_decoder_token_condition import (
    TransformerDecoderTokenCondition,
)

torch.set_num_threads(2)

TOL = 0.03  # fvcore total vs analytic (layer norms; see the module docstring)
EXACT = 1e-9  # fvcore's linear + matmul + conv vs analytic
FEAT, N_IN = 40, 400  # fbank bins, input frames (-> 99 frames after conv2d)
D, VOCAB = 128, 500

ENCODERS = {
    "abs_pos": dict(attention_layer_type="selfattn", pos_enc_layer_type="abs_pos"),
    "rel_pos": dict(attention_layer_type="rel_selfattn", pos_enc_layer_type="rel_pos"),
    # legacy_rel_pos has T relative positions, not 2T-1 (flops.attention once assumed 2T-1)
    "legacy_rel_pos": dict(
        attention_layer_type="legacy_rel_selfattn",
        pos_enc_layer_type="legacy_rel_pos",
        rel_pos_type="legacy",
    ),
    "abs_pos_no_macaron": dict(  # FFN after the merge only: units attn, cgmlp, ffn2
        attention_layer_type="selfattn", pos_enc_layer_type="abs_pos", macaron_ffn=False
    ),
    "rel_pos_no_macaron": dict(
        attention_layer_type="rel_selfattn", pos_enc_layer_type="rel_pos", macaron_ffn=False
    ),
    "rel_pos_no_ffn": dict(  # no FFN at all: units attn, cgmlp
        attention_layer_type="rel_selfattn", pos_enc_layer_type="rel_pos", use_ffn=False
    ),
}


def select_units(enc, gates: torch.Tensor) -> torch.Tensor:
    """Columns of a (..., ffn1/attn/cgmlp/ffn2) gate tensor that ``enc`` has."""
    full = ("ffn1", "attn", "cgmlp", "ffn2")
    return gates[..., [full.index(u) for u in enc.unit_names]]


def encoder(name: str) -> EBranchformerTokenConditionEncoder:
    conf = dict(
        output_size=D,
        attention_heads=4,
        cgmlp_linear_units=4 * D,
        cgmlp_conv_kernel=31,
        linear_units=4 * D,
        num_blocks=2,
        merge_conv_kernel=31,
        input_layer="conv2d",
        use_ffn=True,
        macaron_ffn=True,
        use_flash_attn=False,
    )
    conf.update(ENCODERS[name])
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        enc = EBranchformerTokenConditionEncoder(
            FEAT, context_vocab_size=20, context_dim=8, **conf
        )
    return enc.eval()


def decoder(num_blocks: int = 2) -> TransformerDecoderTokenCondition:
    torch.manual_seed(0)
    dec = TransformerDecoderTokenCondition(
        VOCAB,
        D,
        attention_heads=4,
        linear_units=4 * D,
        num_blocks=num_blocks,
        use_flash_attn=False,
        context_dim=8,
    )
    return dec.eval()


def fvcore(module: torch.nn.Module, *inputs):
    """(total, linear+matmul+conv part) of fvcore's count of ``module(*inputs)``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings of the row selection
        analysis = FlopCountAnalysis(module, inputs)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        by_op = analysis.by_operator()
        total = analysis.total()
    assert set(by_op) <= {"linear", "matmul", "conv", "layer_norm"}, by_op
    return total, total - by_op.get("layer_norm", 0)


def check(fv, analytic: float):
    total, products = fv
    assert products == pytest.approx(analytic, rel=EXACT)
    assert total == pytest.approx(analytic, rel=TOL)
    assert total >= analytic  # fvcore only adds (norms)


def feats(batch: int = 1):
    torch.manual_seed(1)
    return torch.randn(batch, N_IN, FEAT), torch.full((batch,), N_IN)


class Forward(torch.nn.Module):
    """The encoder's forward under fixed gates (what fvcore traces)."""

    def __init__(self, enc, gates):
        super().__init__()
        self.enc, self.gates = enc, gates

    def forward(self, xs, lens):
        if self.gates is None:
            with force_gates(self.enc, 1.0):
                return self.enc(xs, lens)[0]
        with pin_gates(self.enc, self.gates):
            return self.enc(xs, lens)[0]


def frames(enc) -> int:
    xs, lens = feats()
    with torch.no_grad(), force_gates(enc, 1.0):
        return enc(xs, lens)[0].size(1)


@pytest.mark.parametrize("name", list(ENCODERS))
def test_encoder_all_open(name):
    enc = encoder(name)
    n_units = len(enc.unit_names)
    assert n_units == (3 if name.endswith("no_macaron") else 2 if name.endswith("no_ffn") else 4)
    T = frames(enc)
    embed = flops.subsampling(enc, N_IN, FEAT)
    layers = flops.encoder_spent(enc, T, torch.ones(enc.num_layers, n_units))
    fv = fvcore(Forward(enc, None), *feats())
    check(fv, embed + layers)
    # the layers alone (the subsampling is a big share at this size)
    fv_embed = fvcore(enc.embed, feats()[0], torch.ones(1, 1, N_IN, dtype=torch.bool))
    assert fv_embed[1] == embed
    check((fv[0] - fv_embed[0], fv[1] - fv_embed[1]), layers)
    # per-unit costs add up to the all-open count (merge split between branches)
    assert flops.encoder_units(enc, T).sum().item() == pytest.approx(layers, rel=EXACT)


# (layers, units) gate patterns, units = (ffn1, attn, cgmlp, ffn2)
PATTERNS = {
    "ffns_closed": [[0, 1, 1, 0], [1, 1, 1, 0]],
    "attn_closed": [[1, 0, 1, 1], [1, 0, 1, 1]],
    "cgmlp_closed": [[1, 1, 0, 1], [0, 1, 0, 1]],
    "both_branches_closed": [[1, 0, 0, 1], [0, 1, 1, 0]],
    "all_closed": [[0, 0, 0, 0], [0, 0, 0, 0]],
}


PINNED = [("abs_pos", p) for p in PATTERNS] + [
    ("rel_pos", "attn_closed"),
    ("rel_pos", "both_branches_closed"),
    ("rel_pos_no_macaron", "ffns_closed"),
    ("rel_pos_no_macaron", "cgmlp_closed"),
    ("rel_pos_no_ffn", "attn_closed"),
]


@pytest.mark.parametrize("name, pattern", PINNED)
def test_encoder_pinned_gates(name, pattern):
    enc = encoder(name)
    gates = select_units(enc, torch.tensor(PATTERNS[pattern], dtype=torch.float))
    T = frames(enc)
    analytic = flops.subsampling(enc, N_IN, FEAT) + flops.encoder_spent(enc, T, gates)
    check(fvcore(Forward(enc, gates[None]), *feats()), analytic)


def test_encoder_rows_with_different_gates():
    """A batch whose rows run different units: the closed rows are not computed."""
    enc = encoder("abs_pos")
    gates = torch.tensor([PATTERNS["attn_closed"], PATTERNS["both_branches_closed"],
                          [[1, 1, 1, 1]] * 2], dtype=torch.float)  # fmt: skip
    T = frames(enc)
    analytic = sum(
        flops.subsampling(enc, N_IN, FEAT) + flops.encoder_spent(enc, T, g) for g in gates
    )
    check(fvcore(Forward(enc, gates), *feats(3)), analytic)


class TeacherForced(torch.nn.Module):
    def __init__(self, dec, gates):
        super().__init__()
        self.dec, self.gates = dec, gates

    def forward(self, memory, mlens, ys, ylens):
        with pin_gates(self.dec, self.gates):
            return self.dec(memory, mlens, ys, ylens)[0]


class OneStep(torch.nn.Module):
    def __init__(self, dec, gates, cache):
        super().__init__()
        self.dec, self.gates, self.cache = dec, gates, cache

    def forward(self, ys, memory):
        mask = subsequent_mask(ys.size(1)).unsqueeze(0)
        with pin_gates(self.dec, self.gates):
            return self.dec.forward_one_step(ys, mask, memory, cache=self.cache)[0]


DEC_GATES = {
    "open": [[1, 1, 1], [1, 1, 1], [1, 1, 1]],
    "mixed": [[0, 1, 1], [1, 0, 1], [1, 1, 0]],
    "one_layer_closed": [[1, 1, 1], [0, 0, 0], [1, 0, 1]],
}


def decoder_inputs(L: int = 12, T: int = 99):
    torch.manual_seed(2)
    memory = torch.randn(1, T, D)
    ys = torch.randint(0, VOCAB, (1, L))
    return memory, torch.tensor([T]), ys, torch.tensor([L])


@pytest.mark.parametrize("pattern", list(DEC_GATES))
def test_decoder_teacher_forced(pattern):
    dec = decoder(num_blocks=3)
    gates = torch.tensor(DEC_GATES[pattern], dtype=torch.float)
    memory, mlens, ys, ylens = decoder_inputs()
    L, T = ys.size(1), memory.size(1)
    units = flops.decoder_units(dec, L, L, T)
    analytic = (units * gates).sum().item() + L * D * VOCAB
    check(fvcore(TeacherForced(dec, gates[None]), memory, mlens, ys, ylens), analytic)


@pytest.mark.parametrize("pattern", list(DEC_GATES))
def test_decoder_one_step(pattern):
    """Step t of incremental decoding (beam search): cache of t-1 positions."""
    dec = decoder(num_blocks=3)
    # A stock-ESPnet step: source K/V recomputed at every step (decoder_units counts them;
    # the cached path is checked in tests/nets/test_transformer_decoder_token_condition.py).
    dec.cache_src_kv = False
    gates = torch.tensor(DEC_GATES[pattern], dtype=torch.float)
    memory, _, ys, _ = decoder_inputs(L=9)
    t, T = ys.size(1), memory.size(1)
    with torch.no_grad(), pin_gates(dec, gates[None]):
        mask = subsequent_mask(t - 1).unsqueeze(0)
        _, cache = dec.forward_one_step(ys[:, :-1], mask, memory)
    assert [c.size(1) for c in cache] == [t - 1] * 3
    units = flops.decoder_units(dec, 1, t, T)
    analytic = (units * gates).sum().item() + D * VOCAB
    check(fvcore(OneStep(dec, gates[None], cache), ys, memory), analytic)


def test_subsampling_macs_traced_once_per_shape():
    enc = torch.nn.Module()
    enc.embed = Conv2dSubsampling(20, 16, 0.0)
    runs = []
    enc.embed.register_forward_hook(lambda *_: runs.append(1))
    first = flops.subsampling(enc, 100, 20)
    # conv1 (1->16, 3x3, stride 2) over 49 x 9, conv2 (16->16) over 24 x 4, then the linear
    assert first == 49 * 9 * 16 * 9 + 24 * 4 * 16 * 16 * 9 + 24 * 16 * 4 * 16
    assert flops.subsampling(enc, 100, 20) == first and len(runs) == 1
    assert flops.subsampling(enc, 200, 20) > first and len(runs) == 2
