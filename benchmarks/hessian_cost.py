"""Time and peak memory of Hessian-vector products (lit_opt/hessian.py) for one net, in a
fresh process each: random inputs of the net's dataset shape (the cost does not depend on
the pixels).

    python benchmarks/hessian_cost.py mlp 2000 1000          # net, images, images per pass
    python benchmarks/hessian_cost.py cifar_resnet 100 100 --chunk 2
    OMP_NUM_THREADS=1 python benchmarks/hessian_cost.py lenet5 1000 1000 --chunk 10

Prints seconds per product (after one warm-up product) and the peak resident memory above
what the process held before the objective was built (ru_maxrss: the peak is the largest
of one product, or of one chunk of `--chunk` vmapped products when given).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from lit_opt.hessian import TrainingObjective
from lit_opt.module import ClassifierModule, default_data_info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("net")
    p.add_argument("images", type=int)
    p.add_argument("batch", type=int)
    p.add_argument("--chunk", type=int, default=0, help="time one chunk of this many vmapped products instead")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    info = default_data_info("cifar10" if args.net == "cifar_resnet" else "mnist")
    torch.manual_seed(0)
    model = ClassifierModule(net=args.net, data_info=info).eval()
    x = torch.randn(args.images, *info["input_shape"])
    y = torch.randint(0, info["num_classes"], (args.images,))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    obj = TrainingObjective(model, x, y, batch_size=args.batch)
    v = {k: torch.randn_like(t) for k, t in obj.params.items()}
    if args.chunk:
        vs = {k: torch.randn(args.chunk, *t.shape) for k, t in obj.params.items()}
        run, what = (lambda: obj.hvp_many(vs)), f"{args.chunk} vmapped products"
    else:
        run, what = (lambda: obj.hvp(v)), "one product"
    run()  # warm-up: torch.func's first call
    t0 = time.perf_counter()
    for _ in range(args.repeat):
        run()
    seconds = (time.perf_counter() - t0) / args.repeat
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{args.net} ({obj.dimension} weights), {args.images} images, {args.batch} per pass, {what}: "
          f"{seconds:.3f} s, peak memory +{(peak - before) / 1024:.0f} MiB "
          f"(threads {torch.get_num_threads()})")


if __name__ == "__main__":
    main()
