"""Static pruning baselines: L0 structured pruning and convexity-based layer pruning.

- ``hardconcrete``: HardConcrete masks, expected L0 in closed form.
- ``lagrangian``: the FLOPs constraint lambda1 * (s - t) + lambda2 * (s - t)^2.
- ``structured``: masked stock E-Branchformer / Transformer modules
  (``e_branchformer_l0``, ``transformer_decoder_l0``).
- ``espnet_model``: ``model: espnet_l0`` (S2T loss + Lagrangian).
- ``prune``: physical removal -> a plain ESPnet config + checkpoint.
- ``convexity``: graph convexity of class regions per layer (arXiv 2408.11858).
- ``layers``: dropping layers from a stock model.
"""
