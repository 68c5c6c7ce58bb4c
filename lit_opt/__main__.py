"""`python -m lit_opt`: see lit_opt/cli.py."""

import sys

from lit_opt.cli import main

sys.exit(main())
