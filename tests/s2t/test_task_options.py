import torch
from espnet2.tasks.s2t import S2TTask

import espnet_ext

espnet_ext.register()


def test_gate_lr_scale_gives_predictors_their_own_group(tiny_corpus, tiny_config):
    parser = S2TTask.get_parser()
    args = parser.parse_args(["--config", str(tiny_config), "--token_list", str(tiny_corpus["tokens"]),
                              "--gate_lr_scale", "50", "--output_dir", "unused"])
    model = S2TTask.build_model(args)
    (optim,) = S2TTask.build_optimizers(args, model)
    lrs = sorted(g["lr"] for g in optim.param_groups)
    assert lrs == [0.005, 0.25]
    gate = {id(p) for n, p in model.named_parameters() if "gate_predictor." in n}
    fast = next(g for g in optim.param_groups if g["lr"] == 0.25)
    assert {id(p) for p in fast["params"]} == gate
    assert sum(len(g["params"]) for g in optim.param_groups) == len(list(model.parameters()))
    # a scheduler keeps the ratio
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda step: 0.5)
    assert sorted(g["lr"] for g in optim.param_groups) == [0.0025, 0.125]
    del sched
    # default: one group, as stock ESPnet
    args.gate_lr_scale = 1.0
    assert len(S2TTask.build_optimizers(args, model)[0].param_groups) == 1
