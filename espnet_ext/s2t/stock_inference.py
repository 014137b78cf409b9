"""ESPnet's own S2T decoding entry point for gated models: our one patch of ESPnet's decoding.

``python -m espnet2.bin.s2t_inference`` (what s2t.sh's decoding stage calls)
builds ESPnet's ``Speech2Text``, which knows nothing of gates: its ``__call__``
sets the decoding prefix ``[<sos>, <lang>, <task>, ...]`` (from ``--lang_sym``/
``--task_sym``) on its beam search, then encodes and searches without a gate
context. (Its class lives in ``__main__`` there, out of reach of a patch made
at import; ESPnet's ``BeamSearch`` is not.) ``install`` wraps
``BeamSearch.set_hyp_primer``: when the "decoder" scorer is a gated decoder, the
beam search scores with a ``PrefixScorer``, a ``GatedScorer`` whose context is
the prefix's <lang>/<task> (``GatedModelMixin.take_prefix``; none in a stock
model class with fixed gates, e.g. Whisper); the gated model's next ``encode``
without a context takes that scorer's context, once, and gives it the speech
span (``prefix_scorer``).

Our own decoding (``espnet_ext.s2t.inference``) passes the context explicitly
and installs its own ``GatedScorer``, which this patch leaves alone. Speaker and
event embeddings cannot reach the model this way (the stock ``Speech2Text.__call__``
takes no such argument): models with ``spk`` or ``event`` context decode with
``python -m espnet_ext.bin.s2t_inference``.
"""

import functools

from espnet_ext.nets.transformer_decoder_token_condition import (
    GatedScorer,
    TransformerDecoderTokenCondition,
)


class PrefixScorer(GatedScorer):
    """A gated decoder scoring with the context of the decoding prefix (see the module)."""

    def __init__(self, decoder: TransformerDecoderTokenCondition, primer):
        hook = getattr(decoder, "hyp_primer_hook", None)  # GatedModelMixin.take_prefix
        super().__init__(decoder, None if hook is None else hook(primer))
        if hook is not None:  # its next encode() takes the context and adds the speech span
            hook.__self__.prefix_scorer = self


def install() -> None:
    """Wraps ``espnet.nets.beam_search.BeamSearch.set_hyp_primer``. Idempotent."""
    from espnet.nets.beam_search import BeamSearch

    stock = BeamSearch.set_hyp_primer
    if getattr(stock, "installs_prefix_scorer", False):
        return

    @functools.wraps(stock)
    def set_hyp_primer(self, hyp_primer=None):
        stock(self, hyp_primer)
        scorer = self.full_scorers.get("decoder")
        decoder = scorer.decoder if isinstance(scorer, PrefixScorer) else scorer
        # (a GatedScorer that our decoding installed is left alone)
        if isinstance(decoder, TransformerDecoderTokenCondition) and hyp_primer is not None:
            self.full_scorers["decoder"] = self.scorers["decoder"] = PrefixScorer(decoder, hyp_primer)

    set_hyp_primer.installs_prefix_scorer = True
    BeamSearch.set_hyp_primer = set_hyp_primer
