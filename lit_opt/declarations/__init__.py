"""Every choice a user makes, declared once and importable without torch.

    from lit_opt.declarations import DATASETS, NETS, NET_OPTIONS, SCHEDULER_OPTIONS, TOY_FUNCTIONS
    from lit_opt import optim                 # the optimizers: optim.names(), optim.schema(name)

The CLI's checks, the desktop app's form and run list, and the docs tables all read these
tables; the code that builds each thing (lit_opt/datasets.py, nets.py, schedulers.py,
optim/entries.py) looks its entry up here. A new dataset, net option or schedule is one
entry, and every part of the product shows it.
"""

from lit_opt.declarations.datasets import DATASETS, DatasetSpec, get_spec, register  # noqa: F401
from lit_opt.declarations.nets import NET_OPTIONS, NETS, NetSpec  # noqa: F401
from lit_opt.declarations.schedulers import SCHEDULER_OPTIONS  # noqa: F401
from lit_opt.declarations.toys import TOY_FUNCTIONS  # noqa: F401
