"""Gated ESPnet encoders and decoders."""

import inspect


def with_stock_arguments(stock: type):
    """Class decorator: the class's ``__init__`` signature lists ``stock``'s keyword
    arguments where it has ``**kwargs`` (which it passes on to ``stock``), so ESPnet's
    ``--print_config`` (``get_default_kwargs``, from the signature) shows every
    ``encoder_conf`` / ``decoder_conf`` key with its default. Calls are unchanged."""

    def decorate(cls):
        own = inspect.signature(cls.__init__).parameters.values()
        names = {p.name for p in own}
        head = [p for p in own if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD]
        stock_params = [p for p in inspect.signature(stock.__init__).parameters.values()
                        if p.name not in names and p.default is not p.empty
                        and p.kind is p.POSITIONAL_OR_KEYWORD]
        tail = [p for p in own if p not in head]  # ours with defaults, then **kwargs
        cls.__init__.__signature__ = inspect.Signature(head + stock_params + tail)
        return cls

    return decorate
