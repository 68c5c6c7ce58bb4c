r"""Studies: optimizer comparisons and hyperparameter sweeps made of ordinary `fit` runs.

    python -m lit_opt sweep --param model.l2 'logspace(-5,-1,10)' --seeds 2 --out checkpoints/studies/l2 \
        --config configs/seed003_best_mlp.yaml --trainer.max_epochs 5
    python -m lit_opt compare --optimizers sgd:0.1 adam:1e-4,1e-3 --datasets mnist fashion_mnist \
        --seeds 2 --out checkpoints/studies/opt --trainer.max_epochs 3
    python -m lit_opt sweep --study configs/studies/seed003_l2.yaml      # a study file
    python -m lit_opt sweep --study configs/studies/seed003_l2.yaml --print-commands
    python -m lit_opt report checkpoints/studies/l2                     # or any run folders

Every trial is a `python -m lit_opt fit ...` into its own run folder `<study>/<trial>/`
(docs/reference.md), so a study is resumable (finished trials are skipped) and its
trials can be handed to any scheduler. The package, one job per file:

- spec.py     value lists (`logspace(a,b,n)`, `linspace`, lists), study files, trials and
              their exact `fit` command lines
- runner.py   `compare` and `sweep`: run the trials in this process, resume, divergence
- results.py  read run folders, group them by config minus the seed, mean/std over seeds
- tuning.py   which learning rate of a grid is chosen (on every seed, or on the first seed only)
- report.py   Markdown and CSV tables, and `report RUN_FOLDERS...`
- figures.py  PNG figures (matplotlib, Agg backend, imported lazily)
"""
