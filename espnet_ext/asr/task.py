"""ESPnet's ASR task with dynamic pruning (``python -m espnet_ext.bin.asr_train``)."""

from espnet2.tasks import asr

from espnet_ext.task import GatedTask, stock_class


class GatedASRTask(GatedTask, stock_class(asr.ASRTask)):
    """ESPnet's ``ASRTask`` plus the dynamic-pruning options, model set-up, optimizer
    groups and trainer of ``espnet_ext.task.GatedTask``."""
