"""Registers espnet_ext in ESPnet's task registries without any code change.

``espnet_ext.pth`` (installed into site-packages) imports this module at every
interpreter start. It costs no import of torch or ESPnet: it only adds a meta
path finder that waits for ``espnet2.tasks.s2t`` / ``espnet2.tasks.asr`` to be
imported and then adds our classes to their ``ClassChoices``. So the stock
entry points (``python -m espnet2.bin.s2t_train``, ``s2t_inference``) and the
workers ESPnet spawns for multi-GPU training accept our YAML names.

Set ``ESPNET_EXT_AUTOREGISTER=0`` to switch it off (then call
``espnet_ext.register()`` yourself or use ``python -m espnet_ext.bin.*``).
"""

import importlib.abc
import os
import sys

TASK_MODULES = ("espnet2.tasks.s2t", "espnet2.tasks.asr")


class _RegisteringLoader(importlib.abc.Loader):
    """Runs the real loader, then registers into the freshly executed module."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        from espnet_ext import register_task

        register_task(module)


class _TaskFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in TASK_MODULES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None


def install() -> None:
    """Adds the finder once; registers now if a task module is already loaded."""
    if not any(isinstance(f, _TaskFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TaskFinder())
    for name in TASK_MODULES:
        if name in sys.modules:
            from espnet_ext import register_task

            register_task(sys.modules[name])


if os.environ.get("ESPNET_EXT_AUTOREGISTER", "1") != "0":
    install()
