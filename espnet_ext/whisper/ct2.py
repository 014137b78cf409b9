"""CTranslate2 (faster-whisper) Whisper models as openai-whisper state dicts.

``model.bin`` is CTranslate2's own binary format, written by
``ctranslate2.specs.model_spec.ModelSpec._serialize`` (binary version 6 today)::

    uint32 binary_version, string spec_name, uint32 spec_revision
    uint32 n_variables, then per variable:
        string name, uint8 rank, uint32 dims[rank],
        uint8 dtype_id, uint32 n_bytes, bytes data
    uint32 n_aliases, then per alias: string alias, string target

with ``string`` = uint16 length (terminating NUL included), UTF-8 bytes, NUL;
all little-endian. It is read here with ``struct`` and ``torch.frombuffer``, so
neither ctranslate2 nor faster-whisper is needed to load such a model.

CTranslate2's ``WhisperSpec`` holds the weights as its Transformers converter
writes them: the self-attention ``linear_0`` is the fused [Q; K; V] projection, the
cross-attention ``linear_0`` is Q and ``linear_1`` the fused [K; V], the last
linear is the output projection; key biases are stored as zeros, and the
output projection ``decoder/projection/weight`` is an alias of the token
embedding (Whisper ties them).
"""

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Dict, List, Sequence, Tuple, Union

import torch
from whisper.model import ModelDimensions

PathLike = Union[str, Path]

# Order of CTranslate2's DataType enum (include/ctranslate2/types.h).
DTYPES = (torch.float32, torch.int8, torch.int16, torch.int32, torch.float16, torch.bfloat16)
# Binary version 4 introduced the dtype id + byte count layout read here (older
# files predate CTranslate2's Whisper support); ctranslate2 4.x writes version 6.
MIN_VERSION, MAX_VERSION = 4, 6
SPEC = "WhisperSpec"


@dataclass
class ModelBin:
    """The content of a CTranslate2 ``model.bin``.

    Attributes:
        spec: The model specification name (``WhisperSpec`` for Whisper).
        revision: The specification revision.
        variables: Tensors by CTranslate2 name, aliases resolved, in their
            stored dtype (scalars as 0-d tensors).
    """

    spec: str
    revision: int
    variables: Dict[str, torch.Tensor]


class _Chain:
    """Sequential reads over several files as one stream: a model.bin split in parts."""

    def __init__(self, paths: Sequence[PathLike]):
        self.paths = [Path(p) for p in paths]
        self.index = 0
        self.file: BinaryIO = open(self.paths[0], "rb")

    def read(self, n: int) -> bytearray:
        out = bytearray(n)
        view, done = memoryview(out), 0
        while done < n:
            got = self.file.readinto(view[done:])
            if got:
                done += got
                continue
            if self.index + 1 == len(self.paths):
                raise ValueError(
                    f"{self.name} is truncated ({n - done} bytes missing): "
                    "download or copy the model again"
                )
            self.file.close()
            self.index += 1
            self.file = open(self.paths[self.index], "rb")
        return out

    def at_end(self) -> bool:
        if self.file.read(1):
            return False
        while self.index + 1 < len(self.paths):
            self.file.close()
            self.index += 1
            self.file = open(self.paths[self.index], "rb")
            if self.file.read(1):
                return False
        return True

    @property
    def name(self) -> str:
        return " + ".join(str(p) for p in self.paths)

    def close(self):
        self.file.close()


def read_model_bin(paths: Union[PathLike, Sequence[PathLike]]) -> ModelBin:
    """Reads a CTranslate2 ``model.bin``.

    Args:
        paths: The file, or its parts in order (a model.bin split across
            packages is read without joining the parts on disk).

    Returns:
        The specification name, revision and variables (aliases resolved;
        an alias of a quantized weight also gets its ``_scale``, as
        CTranslate2's loader does).

    Raises:
        ValueError: The file is not a CTranslate2 model of a supported binary
            version, or is truncated.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    stream = _Chain(paths)
    try:

        def unpack(fmt: str):
            return struct.unpack("<" + fmt, stream.read(struct.calcsize("<" + fmt)))

        def string() -> str:
            (n,) = unpack("H")
            return bytes(stream.read(n)).rstrip(b"\0").decode("utf-8")

        (version,) = unpack("I")
        if not MIN_VERSION <= version <= MAX_VERSION:
            raise ValueError(
                f"{stream.name} is not a CTranslate2 model of binary version "
                f"{MIN_VERSION}-{MAX_VERSION} (read {version}): convert it with ctranslate2 4.x"
            )
        spec = string()
        (revision,) = unpack("I")
        (count,) = unpack("I")
        variables = {}
        for _ in range(count):
            name = string()
            (rank,) = unpack("B")
            shape = unpack(f"{rank}I")
            dtype_id, n_bytes = unpack("BI")
            if dtype_id >= len(DTYPES):
                raise ValueError(f"{stream.name}: {name} has an unknown dtype id {dtype_id}")
            dtype = DTYPES[dtype_id]
            if n_bytes == 0:  # frombuffer refuses an empty buffer
                variables[name] = torch.empty(shape, dtype=dtype)
                continue
            variables[name] = torch.frombuffer(stream.read(n_bytes), dtype=dtype).reshape(shape)
        (n_aliases,) = unpack("I")
        for _ in range(n_aliases):
            alias, target = string(), string()
            if target in variables:
                variables[alias] = variables[target]
            if target + "_scale" in variables:
                variables[alias + "_scale"] = variables[target + "_scale"]
        if not stream.at_end():
            raise ValueError(f"{stream.name} has data past its last alias: not a model.bin")
    finally:
        stream.close()
    return ModelBin(spec, revision, variables)


def _dequantize(variables: Dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """A weight as a float tensor; int8/int16 ones are scaled back as CTranslate2 does."""
    value = variables[name]
    if value.is_floating_point():
        return value
    scale = variables.get(name + "_scale")
    if scale is None or name + "_zero" in variables:
        raise ValueError(
            f"{name} is stored as {value.dtype} without a plain CTranslate2 scale: "
            "convert the model with --quantization float16 or float32"
        )
    # model_spec.py quantizes as rint(w * scale), per output row for int8
    # (conv weights flattened to 2-D), one scale for int16.
    scale = scale.float().reshape(-1, *[1] * (value.dim() - 1)) if scale.dim() else scale.float()
    return value.float() / scale


def _scalar(variables: Dict[str, torch.Tensor], name: str) -> int:
    return int(variables[name].item())


def ct2_to_whisper(
    model: Union[PathLike, Sequence[PathLike]],
) -> Tuple[ModelDimensions, Dict[str, torch.Tensor]]:
    """Converts a CTranslate2 Whisper model to openai-whisper's layout.

    Args:
        model: A CTranslate2 / faster-whisper model directory (with
            ``model.bin``), or the parts of a ``model.bin`` in order.

    Returns:
        The model dimensions and a state dict for ``whisper.model.Whisper``
        (``load_state_dict(strict=True)`` fits). Tensors keep the stored
        precision (float16 for faster-whisper's models), so the dict is
        lossless; int8/int16 weights are dequantized to float32.

    Raises:
        FileNotFoundError: The directory or its ``model.bin`` does not exist.
        ValueError: The file is not a CTranslate2 Whisper model, or has a
            layout openai-whisper cannot hold.
    """
    if isinstance(model, (str, Path)):
        path = Path(model)
        if path.is_dir():
            path = path / "model.bin"
        if not path.is_file():
            raise FileNotFoundError(
                f"no CTranslate2 model at {path}: pass a faster-whisper directory "
                "that holds model.bin and config.json"
            )
        parts: List[PathLike] = [path]
    else:
        parts = list(model)
    mbin = read_model_bin(parts)
    where = " + ".join(str(p) for p in parts)
    if mbin.spec != SPEC:
        raise ValueError(f"{where} holds a {mbin.spec or 'legacy'} model, not {SPEC}")
    v = mbin.variables

    def var(name: str) -> torch.Tensor:
        if name not in v:
            raise ValueError(
                f"{where} has no variable {name}: not a Whisper model this reader knows"
            )
        return _dequantize(v, name) if name.endswith("weight") else v[name]

    def layers(side: str) -> int:
        found = {int(m.group(1)) for k in v if (m := re.match(rf"{side}/layer_(\d+)/", k))}
        if found != set(range(len(found))):
            raise ValueError(f"{where}: {side} layers {sorted(found)} are not 0..n-1")
        return len(found)

    for flag, want in (
        ("decoder/scale_embeddings", 0),
        ("decoder/pre_norm", 1),
        ("decoder/activation", 3),
    ):
        if flag in v and _scalar(v, flag) != want:
            raise ValueError(f"{where}: {flag} = {_scalar(v, flag)}, Whisper has {want}")

    conv1 = var("encoder/conv1/weight")
    emb = var("decoder/embeddings/weight")
    dims = ModelDimensions(
        n_mels=conv1.shape[1],
        n_audio_ctx=var("encoder/position_encodings/encodings").shape[0],
        n_audio_state=conv1.shape[0],
        n_audio_head=int(var("encoder/num_heads")),
        n_audio_layer=layers("encoder"),
        n_vocab=emb.shape[0],
        n_text_ctx=var("decoder/position_encodings/encodings").shape[0],
        n_text_state=emb.shape[1],
        n_text_head=int(var("decoder/num_heads")),
        n_text_layer=layers("decoder"),
    )

    # openai-whisper computes logits with the token embedding; anything else
    # in the projection cannot be represented.
    proj = v.get("decoder/projection/weight")
    if proj is not None and not torch.equal(_dequantize(v, "decoder/projection/weight"), emb):
        raise ValueError(f"{where}: the output projection is not tied to the token embedding")
    proj_bias = v.get("decoder/projection/bias")
    if proj_bias is not None and proj_bias.any():
        raise ValueError(f"{where}: the output projection has a bias; Whisper has none")

    sd: Dict[str, torch.Tensor] = {}

    def linear(dst: str, src: str, rows: slice = slice(None), bias: bool = True):
        sd[f"{dst}.weight"] = var(f"{src}/weight")[rows]
        if bias:
            sd[f"{dst}.bias"] = var(f"{src}/bias")[rows]

    def norm(dst: str, src: str):
        sd[f"{dst}.weight"] = var(f"{src}/gamma")
        sd[f"{dst}.bias"] = var(f"{src}/beta")

    def attention(dst: str, src: str, state: int, cross: bool):
        # Self-attention: linear_0 = [Q; K; V], linear_1 = out. Cross-attention:
        # linear_0 = Q, linear_1 = [K; V] (computed once from the audio), linear_2 = out.
        # Whisper's key projection has no bias; CTranslate2 stores zeros there.
        # Dropping it would be exact even if it were not zero: q . b_k is the
        # same for every key, and softmax ignores a constant shift.
        fused, names = (
            (f"{src}/linear_1", ("key", "value"))
            if cross
            else (f"{src}/linear_0", ("query", "key", "value"))
        )
        if cross:
            linear(f"{dst}.query", f"{src}/linear_0")
        for i, part in enumerate(names):
            linear(f"{dst}.{part}", fused, slice(i * state, (i + 1) * state), bias=part != "key")
        linear(f"{dst}.out", f"{src}/linear_{2 if cross else 1}")

    def mlp(dst: str, src: str):
        norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
        linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")

    for conv in ("conv1", "conv2"):
        linear(f"encoder.{conv}", f"encoder/{conv}")
    sd["encoder.positional_embedding"] = var("encoder/position_encodings/encodings")
    for i in range(dims.n_audio_layer):
        dst, src = f"encoder.blocks.{i}", f"encoder/layer_{i}"
        norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        attention(f"{dst}.attn", f"{src}/self_attention", dims.n_audio_state, cross=False)
        mlp(dst, src)
    norm("encoder.ln_post", "encoder/layer_norm")

    sd["decoder.token_embedding.weight"] = emb
    sd["decoder.positional_embedding"] = var("decoder/position_encodings/encodings")
    for i in range(dims.n_text_layer):
        dst, src = f"decoder.blocks.{i}", f"decoder/layer_{i}"
        norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        attention(f"{dst}.attn", f"{src}/self_attention", dims.n_text_state, cross=False)
        norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        attention(f"{dst}.cross_attn", f"{src}/attention", dims.n_text_state, cross=True)
        mlp(dst, src)
    norm("decoder.ln", "decoder/layer_norm")
    return dims, sd
