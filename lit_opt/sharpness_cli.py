"""`python -m lit_opt sharpness --ckpt_path CKPT`: the top Hessian eigenvalue and the Hessian
trace of a checkpoint's training objective.

    python -m lit_opt sharpness --ckpt_path checkpoints/RUN/best.ckpt
    python -m lit_opt sharpness --ckpt_path checkpoints/RUN/last.ckpt --samples 5000 --seed 1 --json

The objective is cross-entropy plus the run's L2 penalty (when set) on a fixed, seeded
subset of the run's own training split, with dropout off and BatchNorm on its running
statistics (lit_opt/hessian.py). lambda_max comes from power iteration on Hessian-vector
products, the trace from Hutchinson's estimator with Rademacher probes (its standard error
is printed beside it). The stability threshold of the run's optimizer at its configured
learning rate is printed for comparison (a schedule's current rate is not in the
checkpoint's settings: the threshold uses model.lr). `--json` prints one object:
{"lambda_max", "trace", "samples", "trace_stderr", "threshold", "threshold_formula", ...}.

The checkpoint is read weights-only and checked (lit_opt.inference.load): nothing in the
file runs. Exit code 2 for a refused checkpoint or setting, with the reason.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Optional

from lit_opt.errors import EXIT_BAD_INPUT, LitOptError


def _parser() -> argparse.ArgumentParser:
    from lit_opt.hessian import DEFAULT_BATCH, DEFAULT_MAX_ITER, DEFAULT_TOL

    p = argparse.ArgumentParser(prog="python -m lit_opt sharpness", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt_path", required=True, help="a lit_opt checkpoint (.ckpt)")
    p.add_argument("--samples", type=int, default=2000,
                   help="training images in the fixed subset (default 2000)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the subset, of power iteration's start vector and of the probes (default 0)")
    p.add_argument("--probes", type=int, default=100, help="Rademacher probes for the trace (default 100)")
    p.add_argument("--tol", type=float, default=DEFAULT_TOL,
                   help=f"power iteration stops when lambda changes by less than this, relatively (default {DEFAULT_TOL:g})")
    p.add_argument("--max_iter", type=int, default=DEFAULT_MAX_ITER,
                   help=f"power iteration's most iterations (default {DEFAULT_MAX_ITER})")
    p.add_argument("--batch_size", type=int, default=None,
                   help=f"images per pass; bounds the memory (default {DEFAULT_BATCH}, {CONV_BATCH} for a net "
                        f"with convolutions: docs/performance.md has the memory per image)")
    p.add_argument("--probe_chunk", type=int, default=None,
                   help=f"probes per pass for the trace, vmapped: faster, chunk times the memory (default "
                        f"{DEFAULT_CHUNK}, 1 for a net with convolutions)")
    p.add_argument("--data_dir", default=None,
                   help="the datasets folder (default: the run's own when it exists here, else $LIT_OPT_DATA)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch (default 0: torch's default, all cores); on a machine whose "
                        "cores are shared with other work, 1 can be much faster (13x measured, "
                        "docs/performance.md)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return p


# Memory of a Hessian-vector product grows with the images per pass: about 0.04 MB an image
# for the MNIST MLP, 0.3 MB for LeNet-5 and 10 MB for cifar_resnet (docs/performance.md), so
# nets with convolutions get smaller passes and one probe per pass unless told otherwise.
DEFAULT_CHUNK = 10
CONV_BATCH = 100


def sharpness(ckpt_path: str, samples: int = 2000, seed: int = 0, probes: int = 100, tol: float = 1e-4,
              max_iter: int = 200, batch_size: Optional[int] = None, data_dir: Optional[str] = None,
              probe_chunk: Optional[int] = None) -> dict:
    """The result `--json` prints. Raises LitOptError (CheckpointError, ConfigError,
    DataNotFoundError) with the reason."""
    from torch import nn

    from lit_opt import inference, subsets
    from lit_opt.errors import ConfigError
    from lit_opt.hessian import DEFAULT_BATCH, NOTE, TrainingObjective, threshold_of

    for option, value in (("--probes", probes), ("--batch_size", batch_size), ("--probe_chunk", probe_chunk),
                          ("--max_iter", max_iter)):
        if value is not None and value < 1:
            raise ConfigError(f"{option} must be a whole number, at least 1; got {value}")
    subsets.check_samples(samples)
    model = inference.load(ckpt_path)
    conv = any(isinstance(m, nn.Conv2d) for m in model.net.modules())
    batch_size = batch_size or (CONV_BATCH if conv else DEFAULT_BATCH)
    probe_chunk = probe_chunk or (1 if conv else DEFAULT_CHUNK)
    x, y, about = subsets.training_subset(inference.read_checkpoint(ckpt_path), samples, seed, data_dir)
    t0 = time.perf_counter()
    objective = TrainingObjective(model, x, y, batch_size=batch_size)
    top = objective.top_eigenvalue(seed=seed, tol=tol, max_iter=max_iter)
    t1 = time.perf_counter()
    tr = objective.trace(probes=probes, seed=seed, chunk=probe_chunk)
    t2 = time.perf_counter()
    threshold, formula = threshold_of(model)
    hp = model.hparams
    return {"lambda_max": top["lambda_max"], "trace": tr["trace"], "samples": samples,
            "trace_stderr": tr["stderr"], "probes": probes, "seed": seed,
            "iterations": top["iterations"], "converged": top["converged"], "tol": tol,
            "loss": objective.loss(), "batch_size": batch_size, "probe_chunk": probe_chunk, "threshold": threshold, "threshold_formula": formula,
            "optimizer": hp.optimizer, "lr": model.optimizer_hparams.get("lr"), "l2": float(hp.l2 or 0.0),
            "label_smoothing": float(hp.label_smoothing or 0.0), "net": hp.net, "parameters": objective.dimension,
            "subset": subsets.describe(about), "subset_of": about["of"], "dataset": about["dataset"],
            "objective": NOTE, "seconds_lambda_max": round(t1 - t0, 3), "seconds_trace": round(t2 - t1, 3),
            "ckpt_path": str(ckpt_path)}


def _text(r: dict) -> str:
    converged = "" if r["converged"] else f" (NOT converged after {r['iterations']} iterations)"
    lines = [f"{r['ckpt_path']}: {r['net']} trained with {r['optimizer']}, {r['parameters']} weights",
             f"  lambda_max  {r['lambda_max']:.6g}  ({r['iterations']} power iterations, tol {r['tol']:g}){converged}",
             f"  trace       {r['trace']:.6g} +- {r['trace_stderr']:.2g}  (Hutchinson, {r['probes']} Rademacher probes)",
             f"  loss        {r['loss']:.6g}"]
    if r["threshold"] is not None:
        ratio = r["lambda_max"] / r["threshold"]
        lines.append(f"  threshold   {r['threshold']:.6g} = {r['threshold_formula']} at lr {r['lr']:g}; "
                     f"lambda_max is {ratio:.3g} of it")
    else:
        lines.append(f"  threshold   {r['threshold_formula']}")
    lines.append(f"  on {r['subset']}")
    lines.append(f"  {r['objective']}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from lit_opt.threads import threads_problem, torch_threads

    problem = threads_problem(args.threads)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        with torch_threads(args.threads):
            result = sharpness(args.ckpt_path, args.samples, args.seed, args.probes, args.tol, args.max_iter,
                               args.batch_size, args.data_dir, args.probe_chunk)
    except LitOptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(result) if args.json else _text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
