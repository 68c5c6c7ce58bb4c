"""lit_opt: see how optimizers and regularization shape neural network training.

The library and the headless CLI (`python -m lit_opt`). It never imports Qt: the desktop
app in `gui/` imports lit_opt, never the reverse. Submodules import torch and Lightning,
so this package file stays light (start-up time of `--help` is measured).
"""

__version__ = "0.1.0"
