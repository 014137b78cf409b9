"""Command-line entry points (``python -m espnet_ext.bin.<name>``).

Every one of them, and every worker one of them spawns (which imports it again), first keeps
ESPnet's import-time flash-attention line and g2p_en's NLTK download out of its log
(``espnet_ext.quiet``).
"""

from espnet_ext import quiet

quiet.install()
