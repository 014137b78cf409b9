"""Dynamic pruning for ESPnet's ASR task (``espnet2.tasks.asr``)."""
