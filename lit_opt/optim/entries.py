"""The registry's entries: one `OptimizerInfo` per optimizer, with the factory that builds it.

Adding an optimizer from an existing library is one entry here (and its factory, when the
constructor needs more than the validated settings); the CLI, configs, the app's form, the
playground and the docs tables then show it. torch and the libraries are imported inside
the factories, so reading the entries stays free of torch. Each entry's `source` and
comment name the paper and the authors' code it was checked against.
"""

from __future__ import annotations

import math

from lit_opt.optim.fields import (TOTAL_STEPS, betas_field, eps_field, flag_field, lr_field, momentum_field,
                                   wd_field)
from lit_opt.optim.hyperparameter import Hyperparameter, OptimizerInfo, reject_unknown

# ---- factories (lazy imports keep `import lit_opt.optim` free of torch) -------------------------


def _fused(params) -> dict:
    """{"fused": True} where torch has a fused kernel for these parameters, else {}.

    One fused kernel replaces a loop of small per-tensor ops, with the same results (float64
    Adam after 50 steps: 1e-16 apart); the optimizer step of a small MLP is several times
    faster (docs/performance.md). Plain SGD without momentum is not faster fused, so it keeps
    torch's default.
    """
    tensors = [t for group in params for t in (group["params"] if isinstance(group, dict) else [group])]
    ok = tensors and all(t.is_floating_point() and t.device.type in ("cpu", "cuda") for t in tensors)
    return {"fused": True} if ok else {}


def _sgd(params, lr, weight_decay, momentum=0.0, nesterov=False):
    import torch

    params = list(params)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, dampening=0.0, weight_decay=weight_decay,
                           nesterov=nesterov, **(_fused(params) if momentum else {}))


def _nesterov(params, lr, momentum, weight_decay):
    return _sgd(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)


def _torch(class_name: str, fused: bool = False):
    def factory(params, **kwargs):
        import torch

        params = list(params)
        return getattr(torch.optim, class_name)(params, **kwargs, **(_fused(params) if fused else {}))

    factory.__name__ = f"torch.optim.{class_name}"
    return factory


def _lamb(params, **kwargs):
    from lit_opt.optim.lamb import Lamb

    return Lamb(params, **kwargs)


def _expectigrad(params, **kwargs):
    from lit_opt.optim.expectigrad import Expectigrad

    return Expectigrad(params, **kwargs)


def _adamp(params, **kwargs):
    from pytorch_optimizer import AdamP

    # weight_decouple=True is the paper's (decoupled, AdamW-style) weight decay.
    return AdamP(params, weight_decouple=True, **kwargs)


def _lion(params, **kwargs):
    from pytorch_optimizer import Lion

    # Checked line by line against google/automl lion/lion_pytorch.py (Chen et al. 2023):
    # decoupled decay w <- w(1 - lr*wd) first, then w <- w - lr*sign(lerp(m, g, 1-b1)),
    # m <- lerp(m, g, 1-b2); same defaults. weight_decouple=True, fixed_decay=False is that
    # rule (the library's other settings are not the authors'). Within 1e-15 in float64.
    return Lion(params, weight_decouple=True, fixed_decay=False, **kwargs)


def _muon(params, **kwargs):
    from lit_opt.optim.muon import MuonWithAuxAdamW

    return MuonWithAuxAdamW(params, **kwargs)


def _ademamix(params, **kwargs):
    from lit_opt.optim.ademamix import AdEMAMix

    for key in ("alpha_warmup", "beta3_warmup"):
        if kwargs.get(key) == TOTAL_STEPS:
            raise ValueError(f"ademamix: {key} {TOTAL_STEPS!r} is the run's total number of steps, "
                             f"which lit_opt's module fills in from the trainer; give a number of "
                             f"steps when building the optimizer yourself")

    return AdEMAMix(params, **kwargs)


def _prodigy(params, **kwargs):
    from lit_opt.optim.prodigy import Prodigy

    return Prodigy(params, **kwargs)


def _soap(params, **kwargs):
    from lit_opt.optim.soap import SOAP

    return SOAP(params, **kwargs)


def _schedulefree(class_name: str):
    """The authors' own Schedule-Free optimizers (facebookresearch/schedule_free, the `schedulefree`
    package: AdamWScheduleFree, SGDScheduleFree), started in training mode.

    The authors' optimizers start with train_mode False and refuse to step until `train()` is
    called; with no state yet, `train()` only sets that flag, so every training loop (the
    playground's, SAM's base step, the tests') can step them at once. Evaluating at the
    average x instead of the gradient point y is lit_opt.eval_point.EvalPoint's job (the entry's
    `eval_point`). pytorch_optimizer's ScheduleFreeAdamW is not used: it adds 1e-15 to v/(1 -
    beta2^t) under the square root, where the authors add nothing (docs/optimizers.md).
    """

    def factory(params, **kwargs):
        import schedulefree

        optimizer = getattr(schedulefree, class_name)(params, **kwargs)
        optimizer.train()
        return optimizer

    factory.__name__ = f"schedulefree.{class_name}"
    return factory


def _sam(params, base, rho, adaptive, **base_kwargs):
    from pytorch_optimizer import SAM

    # SAM calls base_optimizer(its param_groups, **base_kwargs): a registry factory fits.
    # The base's state and param_groups are SAM's own (shared objects), so state_dict
    # round-trips and LR schedulers see lr.
    base_factory = _sgd if base == "sgd" else BY_NAME[base].factory
    return SAM(params, base_optimizer=base_factory, rho=rho, adaptive=adaptive, **base_kwargs)


# ---- SAM validation: its own keys plus those of the chosen base optimizer -----------------------

_SAM_OWN = (
    Hyperparameter("base", str, "sgd", choices=(
        "sgd", "momentum", "nesterov", "adagrad", "adadelta", "rmsprop", "adam", "adamw", "lamb",
        "adamp", "expectigrad", "nadam", "radam", "adamax", "adafactor", "lion", "muon",
        "ademamix", "soap", "prodigy", "schedulefree_adamw", "schedulefree_sgd"),
        help="base optimizer that takes the step with the perturbed-point gradient"),
    Hyperparameter("rho", float, 0.05, low=0.0,
                   help="radius of the ascent step (ASAM: about 2.0)"),
    flag_field("adaptive", False, "ASAM: scale the perturbation by |w| (Kwon et al. 2021)"),
)
# With base "sgd" SAM runs SGD with momentum, as in Foret et al. 2021.
_SAM_SGD = (lr_field(0.01), momentum_field(0.9), wd_field(0.0))


def _resolve_sam(given: dict) -> dict:
    base = _SAM_OWN[0].check(given.get("base", "sgd"), "sam")
    base_fields = _SAM_SGD if base == "sgd" else BY_NAME[base].hyperparameters
    # SAM's own keys win: pytorch_optimizer.SAM keeps `rho` for itself, so Adadelta's rho
    # (same name) cannot reach a SAM-wrapped Adadelta, which keeps torch's default 0.9.
    own = {hp.name for hp in _SAM_OWN}
    base_fields = tuple(hp for hp in base_fields if hp.name not in own)
    fields = _SAM_OWN + base_fields
    reject_unknown(f"sam (base {base})", given, fields)
    return {hp.name: hp.check(given.get(hp.name, hp.default), "sam") for hp in fields}


# ---- the entries --------------------------------------------------------------------------------

# Schedule-Free's warm-up and the weighting of its average x: the same in both of the authors' classes.
_SCHEDULE_FREE_AVERAGE = (
    Hyperparameter("warmup_steps", int, 0, low=0,
                   help="steps of linear learning-rate warm-up lr*(k+1)/warmup_steps (the "
                        "authors recommend one; use it instead of a scheduler)"),
    Hyperparameter("r", float, 0.0, low=0.0,
                   help="the average x weights step k by (k+1)^r (0: uniform average)"),
    Hyperparameter("weight_lr_power", float, 2.0, low=0.0,
                   help="the average x also weights each step by lr_max^weight_lr_power, "
                        "lr_max the largest lr so far (down-weights warm-up; 0: off)"),
)


ENTRIES = (
    OptimizerInfo(
        "gd", "full-batch gradient descent: one step per epoch on the whole training set's gradient",
        _sgd, (lr_field(0.1), momentum_field(0.0), wd_field()), full_batch=True,
        source="torch.optim.SGD (stepped once per epoch on the accumulated gradient)"),
    OptimizerInfo(
        "sgd", "stochastic gradient descent, one step per mini-batch, no momentum",
        _sgd, (lr_field(0.1, "learning rate (step size); 0.1 suits MNIST nets (seed 003)"), wd_field()), source="torch.optim.SGD"),
    OptimizerInfo(
        "momentum", "SGD with heavy-ball momentum (Polyak 1964)",
        _sgd, (lr_field(0.01), momentum_field(0.9), wd_field()), source="torch.optim.SGD(momentum=...)"),
    OptimizerInfo(
        "nesterov", "SGD with Nesterov momentum (Sutskever et al. 2013; torch's formulation)",
        _nesterov, (lr_field(0.01), momentum_field(0.9, low_inclusive=False), wd_field()),
        source="torch.optim.SGD(nesterov=True)"),
    OptimizerInfo(
        "adagrad", "per-coordinate step scaled by the root of all past squared gradients",
        _torch("Adagrad", fused=True),
        (lr_field(0.01), eps_field(1e-10),
         Hyperparameter("initial_accumulator_value", float, 0.0, low=0.0,
                        help="starting value of the squared-gradient sum"),
         wd_field()),
        source="torch.optim.Adagrad"),
    OptimizerInfo(
        "adadelta", "Adagrad's fix with running averages of squared gradients and updates (Zeiler 2012)",
        _torch("Adadelta"),
        (lr_field(1.0, "scale applied to the computed update (1.0 is Zeiler's rule)"),
         Hyperparameter("rho", float, 0.9, low=0.0, high=1.0,
                        help="decay rate of the running averages"),
         eps_field(1e-6), wd_field()),
        source="torch.optim.Adadelta"),
    OptimizerInfo(
        "rmsprop", "step scaled by a running average of squared gradients (Hinton 2012)",
        _torch("RMSprop"),
        (lr_field(0.01),
         Hyperparameter("alpha", float, 0.99, low=0.0, high=1.0,
                        help="decay rate of the squared-gradient average"),
         eps_field(1e-8), momentum_field(0.0),
         flag_field("centered", False, "divide by the gradient's estimated variance instead"),
         wd_field()),
        source="torch.optim.RMSprop"),
    OptimizerInfo(
        "adam", "bias-corrected first and second moment estimates (Kingma & Ba 2015)",
        _torch("Adam", fused=True),
        (lr_field(1e-3), betas_field(), eps_field(1e-8), wd_field(),
         flag_field("amsgrad", False, "use the running maximum of the second moment (Reddi et al. 2018)")),
        source="torch.optim.Adam"),
    OptimizerInfo(
        "adamw", "Adam with decoupled weight decay (Loshchilov & Hutter 2019)",
        _torch("AdamW", fused=True),
        (lr_field(1e-3), betas_field(), eps_field(1e-8),
         wd_field(0.01, "decoupled decay: w <- w - lr*weight_decay*w each step"),
         flag_field("amsgrad", False, "use the running maximum of the second moment (Reddi et al. 2018)")),
        source="torch.optim.AdamW"),
    OptimizerInfo(
        "lamb", "Adam update rescaled per tensor by the trust ratio ||w|| / ||update||",
        _lamb,
        (lr_field(1e-3), betas_field(), eps_field(1e-6),
         wd_field(0.01, "decoupled decay, added to the update before the trust ratio")),
        source="lit_opt.optim.lamb.Lamb (You et al. 2019, Alg. 2)"),
    OptimizerInfo(
        "sam", "sharpness-aware minimization: step with the gradient at w + rho*g/||g|| "
               "(two passes per step). Base-optimizer keys other than those listed "
               "(betas, eps, ...) are accepted when the base has them",
        _sam, _SAM_OWN + _SAM_SGD, needs_closure=True,
        source="pytorch_optimizer.SAM (Foret et al. 2021)", resolve=_resolve_sam),
    OptimizerInfo(
        "adamp", "Adam that removes the radial part of updates to scale-invariant weights",
        _adamp,
        (lr_field(1e-3), betas_field(), eps_field(1e-8),
         wd_field(0.0, "decoupled weight decay"),
         Hyperparameter("delta", float, 0.1, low=0.0, low_inclusive=False,
                        help="cosine threshold (over sqrt(dim)) below which a weight is scale-invariant"),
         Hyperparameter("wd_ratio", float, 0.1, low=0.0, high=1.0, high_inclusive=True,
                        help="weight-decay multiplier for projected (scale-invariant) weights"),
         flag_field("nesterov", False, "use a Nesterov-style first moment")),
        source="pytorch_optimizer.AdamP (Heo et al. 2021)"),
    OptimizerInfo(
        "expectigrad", "arithmetic mean of squared gradients over the steps each coordinate was "
                       "active, with bias-corrected outer momentum",
        _expectigrad,
        (lr_field(1e-3),
         Hyperparameter("beta", float, 0.9, low=0.0, high=1.0,
                        help="decay rate of the outer momentum"),
         eps_field(1e-8),
         flag_field("sparse_counter", True, "count only steps where a coordinate's gradient is nonzero"),
         wd_field()),
        source="lit_opt.optim.expectigrad.Expectigrad (Daley & Amato 2020)"),
    # ---- the frontier (issue 19): torch's own variants of Adam, then Adafactor ----
    OptimizerInfo(
        "nadam", "Adam with Nesterov momentum and a warming momentum schedule (Dozat 2016)",
        _torch("NAdam"),
        (lr_field(2e-3), betas_field(), eps_field(1e-8), wd_field(),
         Hyperparameter("momentum_decay", float, 4e-3, low=0.0,
                        help="psi in mu_t = beta1*(1 - 0.5*0.96^(t*psi)); Dozat's 0.96^(t/250)"),
         flag_field("decoupled_weight_decay", False,
               "decay the weights directly (NAdamW) instead of adding an L2 term to the gradient")),
        source="torch.optim.NAdam (Dozat 2016)"),
    # Liu et al. 2020, Alg. 2 rectifies once rho_t > 4; torch (and this entry) once rho_t > 5,
    # the authors' code (LiyuanLucasLiu/RAdam) once rho_t >= 5. Before that torch and the paper
    # take a plain momentum step lr*m_hat, while the authors' code by default
    # (degenerated_to_sgd=False) takes no step at all. With the default betas rho_t is about
    # t - 0.003t, so the thresholds 4, 5 pick the same steps (the first 5 unrectified).
    # Weight decay is decoupled by default, as in the authors' code.
    OptimizerInfo(
        "radam", "Adam whose adaptive step is switched on only once the variance of its "
                 "second-moment estimate is tractable (Liu et al. 2020)",
        _torch("RAdam"),
        (lr_field(1e-3), betas_field(), eps_field(1e-8),
         wd_field(0.0, "weight decay: decoupled (w <- w - lr*weight_decay*w) unless "
                  "decoupled_weight_decay is off, then an L2 term in the gradient"),
         flag_field("decoupled_weight_decay", True,
               "decay the weights directly as the authors' code does (off: coupled L2)")),
        source="torch.optim.RAdam (Liu et al. 2020)"),
    # torch adds eps inside the maximum: u <- max(beta2*u, |g| + eps); Kingma & Ba have no eps.
    OptimizerInfo(
        "adamax", "Adam with the infinity norm: step scaled by the running maximum of |g| "
                  "(Kingma & Ba 2015, sec. 7.1)",
        _torch("Adamax"),
        (lr_field(2e-3), betas_field(), eps_field(1e-8, "added to |g| inside the running maximum (not in the paper)"),
         wd_field()),
        source="torch.optim.Adamax (Kingma & Ba 2015, sec. 7.1)"),
    # torch.optim.Adafactor against Shazeer & Stern 2018, Alg. 4/5 with relative step sizes
    # (rho_t = min(0.01, 1/sqrt(t)), alpha_t = max(eps2, RMS(w)) * rho_t), update clipping d
    # and beta2_t = 1 - t^beta2_decay, no first moment. It differs in two places, as torch's
    # docs say: (1) `lr` replaces the paper's constant 0.01 as the cap of rho_t (and scales
    # the decoupled weight decay w <- w(1 - lr*weight_decay), which the paper does not have);
    # (2) eps1 is not added to g^2 before the row/column averages, but floors their mean
    # (V = R C / max(mean(R), eps1)) and sqrt(V) (U = G / max(sqrt(V), eps1)). torch's own
    # default eps1 is the dtype's machine epsilon (1.2e-7 in float32), which floors gradients
    # below about 1e-7. The paper's eps1 = 1e-30 cannot be used with torch's placement: torch
    # clamps V at eps1^2, which is 0 in float32, so a column whose gradient is always 0 (an
    # MNIST border pixel's first-layer weights) becomes 0 * inf = NaN after one step. This
    # entry defaults to eps1 = 1e-15 (eps1^2 = 1e-30, a normal float32) and refuses eps below
    # 1e-19; with lr 0.01 and weight_decay 0 it follows the paper (eps1 = 1e-30) within 1e-6
    # over 50 steps (tests/test_optim_reference.py). Vectors (biases) get the unfactored
    # second moment, as in the paper's Alg. 5.
    OptimizerInfo(
        "adafactor", "factored second moment (row and column averages) with relative step "
                     "sizes and update clipping, no first moment (Shazeer & Stern 2018)",
        _torch("Adafactor"),
        (lr_field(1e-2, "cap of the relative step size rho_t = min(lr, 1/sqrt(t)); "
                   "the paper fixes it at 0.01"),
         Hyperparameter("beta2_decay", float, -0.8, high=0.0, high_inclusive=True,
                        help="exponent tau in beta2_t = 1 - t^tau (the paper's -0.8)"),
         Hyperparameter("eps", tuple, (1e-15, 1e-3), low=1e-19,
                        help="eps1 floors the second-moment estimate (the paper: 1e-30, which "
                             "underflows here in float32), eps2 the parameter scale RMS(w) (1e-3)"),
         Hyperparameter("d", float, 1.0, low=1.0,
                        help="update clipping threshold: the update's RMS is capped at d "
                             "(torch allows d >= 1)"),
         wd_field(0.0, "decoupled decay w <- w - lr*weight_decay*w (not in the paper)")),
        source="torch.optim.Adafactor (Shazeer & Stern 2018; lr and eps1 differ, see docs/optimizers.md)"),
    OptimizerInfo(
        "lion", "sign of an interpolated momentum: every coordinate moves by exactly lr "
                "(Chen et al. 2023, found by program search)",
        _lion,
        (lr_field(1e-4, "learning rate; the authors suggest 3-10x smaller than AdamW's"),
         betas_field((0.9, 0.99)),
         wd_field(0.0, "decoupled decay w <- w - lr*weight_decay*w (the authors: 3-10x AdamW's)")),
        source="pytorch_optimizer.Lion (Chen et al. 2023; matches google/automl lion_pytorch.py)"),
    # The split (which layer gets Muon) is lit_opt.optim.muon.assign; the scale is
    # KellerJordan's sqrt(max(1, rows/cols)) (torch's adjust_lr_fn="original").
    OptimizerInfo(
        "muon", "hidden weight matrices step along the orthogonalized momentum (Newton-Schulz), "
                "AdamW trains the first and last layer, biases, norms and conv kernels "
                "(Jordan et al. 2024)",
        _muon,
        (lr_field(0.02, "Muon's learning rate for the hidden 2-D weights (spectral norm per step)"),
         momentum_field(0.95),
         flag_field("nesterov", True, "Nesterov momentum: orthogonalize lerp(g, m, momentum)"),
         Hyperparameter("ns_steps", int, 5, low=1, high=100,
                        help="Newton-Schulz iterations that orthogonalize each update"),
         wd_field(0.0, "decoupled decay w <- w - lr*weight_decay*w, both parts (authors' README: 0.01)"),
         Hyperparameter("adamw_lr", float, 3e-4, low=0.0, low_inclusive=False, log_scale=True,
                        help="AdamW's learning rate for every parameter Muon does not take"),
         Hyperparameter("adamw_betas", tuple, (0.9, 0.95), low=0.0, high=1.0,
                        help="AdamW's decay rates of the first and second moment averages"),
         Hyperparameter("adamw_eps", float, 1e-10, low=0.0, low_inclusive=False, log_scale=True,
                        help="AdamW's denominator term for numerical stability")),
        source="torch.optim.Muon + torch.optim.AdamW as one optimizer "
               "(lit_opt.optim.muon; KellerJordan/Muon MuonWithAuxAdam)",
        needs_matrices=True),
    OptimizerInfo(
        "ademamix", "Adam whose numerator adds alpha times a slow gradient EMA (beta3 near 1) "
                    "to the fast one, with separate warm-ups of alpha and beta3 "
                    "(Pagliardini et al. 2024)",
        _ademamix,
        (lr_field(1e-3),
         Hyperparameter("betas", tuple, (0.9, 0.999, 0.9999), low=0.0, high=1.0,
                        help="decay rates of the fast EMA, the squared-gradient EMA and the slow EMA"),
         Hyperparameter("alpha", float, 2.0, low=0.0,
                        help="weight of the slow EMA in the update (the paper: 5 to 10 for LLMs)"),
         Hyperparameter("alpha_warmup", int, 0, low=0, words=(TOTAL_STEPS,),
                        help="steps over which alpha rises linearly from 0 (0: none, the "
                             "authors' default; auto: the run's total steps, as in the paper)"),
         Hyperparameter("beta3_warmup", int, 0, low=0, words=(TOTAL_STEPS,),
                        help="steps over which beta3 rises from beta1, linearly in half-life "
                             "(0: none, the authors' default; auto: the run's total steps, as in "
                             "the paper)"),
         eps_field(1e-8),
         wd_field(0.0, "decoupled decay w <- w - lr*weight_decay*w")),
        source="lit_opt.optim.ademamix.AdEMAMix (apple/ml-ademamix pytorch/ademamix.py; "
               "pytorch_optimizer's has one shared warm-up)"),
    # Our own from nikhilvyas/SOAP soap.py: pytorch_optimizer's SOAP merges dimensions
    # differently (merge_dims fails on small weights), normalizes with another eps and counts
    # steps per group (lit_opt/optim/soap.py says more). On a vector (a bias, or a toy
    # function's point) without precondition_1d it is Adam with its first step skipped, so
    # the playground leaves it out with muon (needs_matrices).
    OptimizerInfo(
        "soap", "Adam run in the eigenbasis of Shampoo's preconditioner, the basis refreshed "
                "every few steps (Vyas et al. 2024)",
        _soap,
        (lr_field(3e-3),
         Hyperparameter("betas", tuple, (0.95, 0.95), low=0.0, high=1.0,
                        help="decay rates of Adam's first and second moment (in the eigenbasis)"),
         Hyperparameter("shampoo_beta", float, -1.0, low=-1.0, high=1.0,
                        help="decay rate of Shampoo's statistics L = EMA(G G^T), R = EMA(G^T G); "
                             "negative: betas[1] (the authors' -1)"),
         eps_field(1e-8),
         wd_field(0.01, "decoupled decay w <- w - lr*weight_decay*w, after the step"),
         Hyperparameter("precondition_frequency", int, 10, low=1,
                        help="steps between eigenbasis refreshes (one power iteration and QR)"),
         Hyperparameter("max_precond_dim", int, 10000, low=1,
                        help="dimensions larger than this are not rotated (identity basis)"),
         flag_field("merge_dims", False, "merge neighbouring dimensions of a tensor (conv kernels) "
                                    "while their product is at most max_precond_dim"),
         flag_field("precondition_1d", False, "rotate vectors (biases) too, with a full matrix "
                                         "g g^T (off: Adam for them)"),
         flag_field("normalize_grads", False, "divide each tensor's update by its RMS (the authors: "
                                         "helps at precondition_frequency ~100)"),
         flag_field("correct_bias", True, "Adam's bias correction of both moments")),
        source="lit_opt.optim.soap.SOAP (nikhilvyas/SOAP soap.py; pytorch_optimizer's "
               "merges dimensions differently)",
        needs_matrices=True),
    # Our own from konstmish/prodigy prodigyopt/prodigy.py: pytorch_optimizer's Prodigy
    # applies coupled weight decay after the moments (no effect) and sums d's statistics in
    # float32 (lit_opt/optim/prodigy.py). param_groups[0]["d"] is its step size (train/d).
    OptimizerInfo(
        "prodigy", "Adam with a step size d estimated on the fly from the distance travelled "
                   "(learning-rate-free; Mishchenko & Defazio 2024)",
        _prodigy,
        (lr_field(1.0, "multiplies the estimated step size d; the authors: leave it at 1"),
         betas_field(),
         Hyperparameter("beta3", float, 0.0, low=0.0, high=1.0,
                        help="decay rate of d's running sums; 0: sqrt(betas[1]) (the authors' None)"),
         eps_field(1e-8, "added to sqrt(v) as d*eps"),
         wd_field(0.0, "weight decay: decoupled (w <- w - d*lr*weight_decay*w) unless decouple is "
                  "off, then an L2 term in the gradient"),
         flag_field("decouple", True, "decay the weights directly (AdamW style), as the authors' default"),
         flag_field("use_bias_correction", False, "Adam's bias correction in the step size"),
         flag_field("safeguard_warmup", False, "leave lr out of d's denominator (helps with lr warm-up)"),
         Hyperparameter("d0", float, 1e-6, low=0.0, low_inclusive=False, log_scale=True,
                        help="initial estimate of d (rarely needs changing)"),
         Hyperparameter("d_coef", float, 1.0, low=0.0, low_inclusive=False,
                        help="multiplies the estimate of d; the authors' preferred knob (0.5 to 2)"),
         Hyperparameter("growth_rate", float, math.inf, low=1.0, high=math.inf,
                        high_inclusive=True,
                        help="cap on d's growth per step (1.02: a kind of warm-up; inf: none)")),
        source="lit_opt.optim.prodigy.Prodigy (konstmish/prodigy prodigyopt/prodigy.py; "
               "pytorch_optimizer's ignores coupled weight decay)"),
    # The authors' package (schedulefree 1.4.1, facebookresearch/schedule_free): per step k = 0, 1, ...
    # lr_k = lr*min(1, (k+1)/warmup_steps), lr_max = max over steps of lr_k,
    # c = (k+1)^r lr_max^weight_lr_power / (sum of those weights so far), and with the gradient g
    # at y:  z <- z - lr_k*(u + weight_decay*y),  x <- (1 - c) x + c z,  y = beta x + (1 - beta) z,
    # where u = g (SGD) or g / (sqrt(v / (1 - beta2^(k+1))) + eps), v the EMA of g^2 (AdamW).
    # Only y and z are stored: the weights hold y while training, and optimizer.eval() moves them
    # to x. Evaluation, test and checkpoints need x: the entry's eval_point (lit_opt.eval_point).
    # Meant to be used without a learning-rate schedule (lit_opt.eval_point.check_schedule).
    OptimizerInfo(
        "schedulefree_adamw", "AdamW without a schedule: steps z with Adam's normalized gradient, "
                              "takes gradients at an interpolation y of z and the running average "
                              "x, and evaluates at x (Defazio et al. 2024, AlgoPerf 2024 winner)",
        _schedulefree("AdamWScheduleFree"),
        (lr_field(0.0025, "learning rate of the steps on z; the authors: 1x-10x a scheduled AdamW's"),
         Hyperparameter("betas", tuple, (0.9, 0.999), low=0.0, high=1.0, low_inclusive=False,
                        help="beta1: y = (1-beta1)*z + beta1*x, the momentum (the authors: 0.9, 0.95 "
                             "to 0.98 for long runs); beta2: decay of the squared-gradient average"),
         eps_field(1e-8, "added to the bias-corrected sqrt(v)"),
         wd_field(0.0, "decoupled weight decay computed at y: z <- z - lr*weight_decay*y (not "
                  "divided by sqrt(v))"),
         *_SCHEDULE_FREE_AVERAGE),
        source="schedulefree.AdamWScheduleFree (facebookresearch/schedule_free "
               "adamw_schedulefree.py; pytorch_optimizer's adds 1e-15 under the square root)",
        eval_point=True),
    OptimizerInfo(
        "schedulefree_sgd", "SGD without a schedule: steps z with the gradient, takes gradients "
                            "at an interpolation y of z and the running average x, and "
                            "evaluates at x (Defazio et al. 2024)",
        _schedulefree("SGDScheduleFree"),
        (lr_field(1.0, "learning rate of the steps on z; the authors: 10x-50x a classical SGD's "
                  "(the first step is a full SGD step at lr)"),
         Hyperparameter("momentum", float, 0.9, low=0.0, high=1.0, low_inclusive=False,
                        help="y = (1-momentum)*z + momentum*x (the authors: 0.9, 0.95 to 0.98 for "
                             "long runs)"),
         wd_field(0.0, "weight decay computed at y, added to the gradient: z <- z - "
                  "lr*(g + weight_decay*y)"),
         *_SCHEDULE_FREE_AVERAGE),
        source="schedulefree.SGDScheduleFree (facebookresearch/schedule_free sgd_schedulefree.py)",
        eval_point=True),
)
BY_NAME = {entry.name: entry for entry in ENTRIES}
