"""Gate predictor of context-aware dynamic pruning (ICLR 2025, Algorithm 1).

    x_pooled = LayerNorm(pool(x_GP))         # over valid frames only
    x = concat(C, x_pooled)                  # C: context embeddings
    logits = reshape(G(x), (L, 2))           # G: small MLP
    gates = SGSE(logits)[..., 1]             # straight-through Gumbel-softmax
"""

from dataclasses import dataclass, field, fields
from typing import Dict, List, Optional, Tuple

import torch
from typeguard import typechecked

from espnet_ext.gating.context import GateContext
from espnet_ext.gating.gumbel import sample_gates

CONTEXT_KINDS = ("lang", "task", "spk", "event")


@dataclass
class GateOptions:
    """The gate predictor's options, named as the YAML keys of ``encoder_conf`` /
    ``decoder_conf`` at every layer (the gated modules take them as keyword arguments,
    because ESPnet reads a module's options from its signature).

    Args:
        gate_context: Context sources, a subset of ("lang", "task", "spk", "event").
        context_vocab_size: Token table size for lang/task (None: the token list's).
        context_dim: Size of each context source's embedding.
        spk_embed_dim: Speaker embedding size (for "spk").
        event_embed_dim: Acoustic-event embedding size (for "event").
        gate_pooling: "mean" (Algorithm 1) or "attention" (frame-level context).
        gate_hidden_units: 0 = one linear layer G (Algorithm 1), else a 2-layer MLP
            with this hidden size.
        gate_init_bias: Initial logit margin in favour of "open", so fine-tuning
            starts from the pre-trained (all-open) network.
    """

    gate_context: List[str] = field(default_factory=lambda: ["lang", "task"])
    context_vocab_size: Optional[int] = None
    context_dim: int = 64
    spk_embed_dim: Optional[int] = None
    event_embed_dim: Optional[int] = None
    gate_pooling: str = "mean"
    gate_hidden_units: int = 0
    gate_init_bias: float = 3.0


# encoder_conf/decoder_conf keys the gated modules add to the stock ones
# (``fixed_gates`` aside, which only static exports use).
GATE_CONF_KEYS = tuple(f.name for f in fields(GateOptions))


class MeanPooling(torch.nn.Module):
    """Mean over the valid frames of (#batch, T, D) -> (#batch, D)."""

    def forward(self, xs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(xs.dtype).unsqueeze(-1)  # (B, T, 1)
        return (xs * m).sum(1) / m.sum(1).clamp(min=1.0)


class AttentionPooling(torch.nn.Module):
    """Learned attention over frames (Interspeech 2025's frame-level context).

    Each frame gets a score ``w^T tanh(W x_t)``; the pooled vector is the
    softmax-weighted sum over valid frames.
    """

    def __init__(self, size: int, hidden: int = 128):
        super().__init__()
        self.proj = torch.nn.Linear(size, hidden)
        self.score = torch.nn.Linear(hidden, 1, bias=False)

    def forward(self, xs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(torch.tanh(self.proj(xs))).squeeze(-1)  # (B, T)
        scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
        return torch.einsum("bt,btd->bd", weights, xs)


POOLINGS = {"mean": MeanPooling, "attention": AttentionPooling}


class ContextEmbedding(torch.nn.Module):
    """Maps a ``GateContext`` to the vector C (concat of per-source embeddings).

    ``lang``/``task``: learned embeddings of the token ids (an embedding lookup
    is the linear projection of a one-hot), then LayerNorm. ``spk``/``event``:
    Linear + LayerNorm of the given vectors. The tables span ``vocab_size``
    rows until ``restrict`` keeps those of the <lang>/<task> tokens only.

    Args:
        kinds (List[str]): Enabled sources, subset of ("lang", "task", "spk", "event").
        vocab_size (int): Token vocabulary size (for lang/task).
        dim (int): Output size of each source.
        spk_embed_dim (int): Input speaker-embedding size (for spk).
        event_embed_dim (int): Input event-embedding size (for event).
    """

    @typechecked
    def __init__(
        self,
        kinds: List[str],
        vocab_size: Optional[int],
        dim: int,
        spk_embed_dim: Optional[int] = None,
        event_embed_dim: Optional[int] = None,
    ):
        super().__init__()
        unknown = [k for k in kinds if k not in CONTEXT_KINDS]
        if unknown or len(set(kinds)) != len(kinds):
            raise ValueError(
                f"gate_context must be distinct names from {CONTEXT_KINDS}, got {kinds}"
            )
        self.kinds = list(kinds)
        self.vocab_size = vocab_size
        self.proj = torch.nn.ModuleDict()
        for kind in self.kinds:
            if kind in ("lang", "task"):
                if not vocab_size:
                    raise ValueError(
                        f"gate_context has '{kind}': set context_vocab_size "
                        "(the size of the token list)"
                    )
                self.proj[kind] = torch.nn.Sequential(
                    torch.nn.Embedding(vocab_size, dim), torch.nn.LayerNorm(dim)
                )
            else:
                in_dim = spk_embed_dim if kind == "spk" else event_embed_dim
                if not in_dim:
                    raise ValueError(
                        f"gate_context has '{kind}': set {kind}_embed_dim "
                        "(the size of the extracted embeddings)"
                    )
                self.proj[kind] = torch.nn.Sequential(
                    torch.nn.Linear(in_dim, dim), torch.nn.LayerNorm(dim)
                )
        self.output_size = dim * len(self.kinds)

    def restrict(self, ids: Dict[str, torch.Tensor]) -> None:
        """Keeps the lang/task table rows of the token ids ``ids[kind]`` only.

        OWSM's token list has 50k entries, of which ~300 are <lang>/<task> tokens: full
        tables would add 4 x 50k x dim parameters that are never read. Row 0 stands for
        any other id (zeros). A state dict with full tables (older models) still loads:
        the rows of ``ids`` are taken from it.
        """
        for kind, kind_ids in ids.items():
            if kind not in self.proj or kind not in ("lang", "task") or hasattr(self, f"{kind}_rows"):
                continue
            kind_ids = torch.as_tensor(kind_ids, dtype=torch.long)
            rows = torch.zeros(self.vocab_size, dtype=torch.long)
            rows[kind_ids] = torch.arange(1, len(kind_ids) + 1)
            self.register_buffer(f"{kind}_rows", rows, persistent=False)
            table = self.proj[kind][0]
            small = torch.nn.Embedding(len(kind_ids) + 1, table.embedding_dim)
            with torch.no_grad():  # the same initial vectors as the full table had
                small.weight.zero_()
                small.weight[1:] = table.weight[kind_ids]
            small.weight.requires_grad_(table.weight.requires_grad)  # a frozen side stays frozen
            self.proj[kind][0] = small.to(table.weight)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for kind in ("lang", "task"):
            key = f"{prefix}proj.{kind}.0.weight"
            rows = getattr(self, f"{kind}_rows", None)
            if rows is not None and key in state_dict and state_dict[key].size(0) == rows.numel():
                full = state_dict[key]  # a full table: its rows of our ids, in our order
                ids = torch.nonzero(rows, as_tuple=True)[0][rows[rows > 0].argsort()]
                state_dict[key] = torch.cat([full.new_zeros(1, full.size(1)), full[ids.to(full.device)]])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, context: Optional[GateContext]) -> Optional[torch.Tensor]:
        """Returns C (#batch, output_size), or None if no source is enabled."""
        if not self.kinds:
            return None
        if context is None:
            raise ValueError(
                f"the gate predictor needs context {self.kinds} but got none: pass "
                "context=GateContext(...) (to the model's forward/encode, the gated module, "
                "its GatedScorer), decode with espnet_ext's Speech2Text, or use "
                "espnet_ext.gating.force_gates"
            )
        parts = []
        for kind in self.kinds:
            if kind in ("lang", "task"):
                if context.tokens is None:
                    raise ValueError(f"gate context '{kind}' needs the <lang>/<task> token ids")
                ids = context.tokens[:, 0 if kind == "lang" else 1]
                rows = getattr(self, f"{kind}_rows", None)
                parts.append(self.proj[kind](ids if rows is None else rows[ids]))
            else:
                x = getattr(context, f"{kind}_embed")
                if x is None:
                    raise ValueError(
                        f"gate context '{kind}' is enabled but no {kind}_embed was given "
                        f"(pass {kind}_embed.scp as '{kind}_embed' data)"
                    )
                expected = self.proj[kind][0].in_features
                if x.dim() != 2 or x.size(1) != expected:
                    raise ValueError(
                        f"{kind}_embed must be (#batch, {expected}), got {tuple(x.shape)}"
                    )
                parts.append(self.proj[kind](x.to(self.proj[kind][0].weight.dtype)))
        return torch.cat(parts, dim=-1)


class GatePredictor(torch.nn.Module):
    """Predicts L binary gates per utterance from pooled features and context.

    Args:
        input_size (int): Feature size D of x_GP.
        num_gates (int): Number L of gated units.
        options (GateOptions): Context, pooling, size and initial bias.
    """

    @typechecked
    def __init__(self, input_size: int, num_gates: int, options: Optional[GateOptions] = None):
        super().__init__()
        o = options or GateOptions()
        if o.gate_pooling not in POOLINGS:
            raise ValueError(f"unknown gate_pooling: {o.gate_pooling} (choose from {list(POOLINGS)})")
        self.num_gates = num_gates
        self.context = ContextEmbedding(
            list(o.gate_context), o.context_vocab_size, o.context_dim, o.spk_embed_dim,
            o.event_embed_dim,
        )
        pool = POOLINGS[o.gate_pooling]
        self.pool = pool(input_size) if o.gate_pooling == "attention" else pool()
        hidden_units, init_open_bias = o.gate_hidden_units, o.gate_init_bias
        # x_GP's scale varies (e.g. the subsampling output is scaled by sqrt(d));
        # a LayerNorm keeps the initial logits near their bias whatever the model.
        self.norm = torch.nn.LayerNorm(input_size)
        in_dim = input_size + self.context.output_size
        out = torch.nn.Linear(hidden_units or in_dim, 2 * num_gates)
        # Small weights: gates start open through the bias, yet gradients
        # reach the context embeddings from the first step.
        torch.nn.init.normal_(out.weight, std=0.01)
        with torch.no_grad():
            out.bias.view(num_gates, 2).copy_(torch.tensor([0.0, init_open_bias]))
        self.net = (
            torch.nn.Sequential(torch.nn.Linear(in_dim, hidden_units), torch.nn.ReLU(), out)
            if hidden_units
            else out
        )

    def logits(
        self, xs: torch.Tensor, mask: torch.Tensor, context: Optional[GateContext]
    ) -> torch.Tensor:
        """Gate logits.

        Args:
            xs (torch.Tensor): x_GP (#batch, T, D).
            mask (torch.Tensor): Valid frames (#batch, T) bool.
            context (GateContext): Context of the batch (rows broadcast from 1).

        Returns:
            torch.Tensor: (#batch, L, 2) logits of (closed, open).
        """
        x = self.norm(self.pool(xs, mask))
        c = self.context(context.expand(xs.size(0)) if context is not None else None)
        if c is not None:
            x = torch.cat([c.to(x.dtype), x], dim=-1)
        return self.net(x).view(-1, self.num_gates, 2)

    def forward(
        self,
        xs: torch.Tensor,
        mask: torch.Tensor,
        context: Optional[GateContext],
        tau: float = 1.0,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Returns hard gates (#batch, L) and open-probabilities (#batch, L)."""
        return sample_gates(self.logits(xs, mask, context), tau, self.training)
