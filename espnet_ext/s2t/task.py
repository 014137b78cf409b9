"""ESPnet's S2T task with dynamic pruning (``python -m espnet_ext.bin.s2t_train``)."""

from espnet2.tasks import s2t

from espnet_ext.task import GatedTask, stock_class


class GatedS2TTask(GatedTask, stock_class(s2t.S2TTask)):
    """ESPnet's ``S2TTask`` plus the dynamic-pruning options, model set-up, optimizer
    groups and trainer of ``espnet_ext.task.GatedTask``."""
