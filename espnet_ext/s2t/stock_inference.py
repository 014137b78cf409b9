"""ESPnet's own S2T decoding entry point for gated models.

``python -m espnet2.bin.s2t_inference`` (what s2t.sh's decoding stage calls)
builds ESPnet's ``Speech2Text``, which knows nothing of gates: it encodes the
speech without a gate context. It does set the decoding prefix first,
``[<sos>, <lang>, <task>, ...]`` from ``--lang_sym``/``--task_sym``, on its
beam search. ``install`` makes ``BeamSearch.set_hyp_primer`` pass that prefix
to every scorer with a ``hyp_primer_hook``; a gated model's decoder has one
(``GatedModelMixin``), which makes the prefix's <lang>/<task> the gate context
of the utterance for the encoder and the decoder alike. A context given
explicitly (``use_context``, our ``Speech2TextGated``) takes precedence.

Speaker and event embeddings cannot reach the model this way (the stock
``Speech2Text.__call__`` takes no such argument): models with ``spk`` or
``event`` context decode with ``python -m espnet_ext.bin.s2t_inference``.
"""

import functools


def install() -> None:
    """Wraps ``espnet.nets.beam_search.BeamSearch.set_hyp_primer``. Idempotent."""
    from espnet.nets.beam_search import BeamSearch

    stock = BeamSearch.set_hyp_primer
    if getattr(stock, "calls_hyp_primer_hooks", False):
        return

    @functools.wraps(stock)
    def set_hyp_primer(self, hyp_primer=None):
        stock(self, hyp_primer)
        for scorer in self.scorers.values():
            hook = getattr(scorer, "hyp_primer_hook", None)
            if hook is not None and hyp_primer is not None:
                hook(hyp_primer)

    set_hyp_primer.calls_hyp_primer_hooks = True
    BeamSearch.set_hyp_primer = set_hyp_primer
