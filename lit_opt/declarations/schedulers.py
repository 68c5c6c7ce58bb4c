"""Learning-rate schedules by name and their options (model.scheduler, model.scheduler_args),
importable without torch; lit_opt/schedulers.py builds them with torch.optim.lr_scheduler."""

from __future__ import annotations

from lit_opt.optim.hyperparameter import Hyperparameter as H

SCHEDULER_OPTIONS: dict[str, tuple[H, ...]] = {
    "constant": (),
    "step": (H("step_size", int, 10, low=1, help="epochs between learning-rate drops"),
             H("gamma", float, 0.1, low=0.0, high=1.0, low_inclusive=False, high_inclusive=True,
               help="factor applied to the learning rate at each drop")),
    "cosine": (H("eta_min", float, 0.0, low=0.0, help="learning rate at the end of the cosine"),),
    "onecycle": (H("pct_start", float, 0.3, low=0.0, high=1.0, low_inclusive=False,
                   help="share of the steps spent warming up"),
                 H("cycle_momentum", bool, True,
                   help="also cycle momentum (SGD's, Adam's beta1) inversely to the rate, as torch does by default"),
                 H("div_factor", float, 25.0, low=1.0, help="the starting rate is the peak rate / div_factor"),
                 H("final_div_factor", float, 1e4, low=1.0,
                   help="the final rate is the starting rate / final_div_factor")),
    "warmup_linear": (H("warmup", float, 0.23, low=0.0, high=1.0,
                        help="share of the steps over which the rate rises"),
                      H("start_factor", float, 0.2, low=0.0, high=1.0, high_inclusive=True,
                        help="the first step's rate, as a multiple of model.lr"),
                      H("end_factor", float, 0.07, low=0.0, high=1.0, high_inclusive=True,
                        help="the last step's rate, as a multiple of model.lr")),
}
