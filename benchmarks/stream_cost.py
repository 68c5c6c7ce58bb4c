"""What the live stream costs per training batch: the time spent in LiveStream's hooks
(sources, row building, and the flushes that move values to the host and write steps.csv),
in a real one-epoch fit of 200 batches.

    LIT_OPT_DATA=../shared/datasets OMP_NUM_THREADS=1 python benchmarks/stream_cost.py mlp
    LIT_OPT_DATA=../shared/datasets OMP_NUM_THREADS=1 python benchmarks/stream_cost.py lenet5
"""
import os
import sys
import tempfile
import time
from lit_opt.stream import LiveStream
spent = {"start": 0.0, "end": 0.0, "flush": 0.0, "n": 0}
for name, key in (("on_train_batch_start", "start"), ("on_train_batch_end", "end"), ("flush", "flush")):
    orig = getattr(LiveStream, name)
    def wrap(self, *a, orig=orig, key=key, **k):
        t = time.perf_counter(); r = orig(self, *a, **k); spent[key] += time.perf_counter() - t
        if key == "end": spent["n"] += 1
        return r
    setattr(LiveStream, name, wrap)
from lit_opt.jobs import prepare_fit
net = sys.argv[1]
cfg = {"seed_everything": 0, "trainer": {"max_epochs": 1, "accelerator": "cpu", "enable_progress_bar": False, "enable_model_summary": False},
       "model": {"net": net, **({"net_args": {"hidden": "deep"}} if net == "mlp" else {}), "optimizer": "sgd", "lr": 0.1},
       "data": {"name": "mnist", "data_dir": os.environ.get("LIT_OPT_DATA"), "train_size": 20000, "batch_size": 100}, "run": {"root": tempfile.mkdtemp(), "test": False}}
job = prepare_fit(cfg); t = time.perf_counter(); job.run(); total = time.perf_counter() - t
n = spent["n"]
print(f"{net}: {n} batches; stream per batch: start {1e6*spent['start']/n:.1f} us, end (incl. flushes) {1e6*spent['end']/n:.1f} us, of which flush {1e6*spent['flush']/n:.1f} us; epoch_time {job.model.trainer.callback_metrics['train/epoch_time'].item():.2f} s")
