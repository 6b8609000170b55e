"""The private names of Hydra that makemore-sweep relies on, in one place, each with its reason.

tests/test_compat.py fails loudly when a new Hydra release renames or removes one of them.
"""

from __future__ import annotations

import argparse
import contextlib
import io

# Hydra's own command-line parser (what `@hydra.main` parses sys.argv with). makemore-train
# checks the overrides before handing over to `@hydra.main` (see cli/train.py), so it must split
# the command line exactly as Hydra will: which arguments are overrides and which are flags
# (-m, --cfg job, -cn NAME...). Hydra has no public function for that.
from hydra._internal.utils import get_args_parser


def parse_hydra_command_line(args: list[str]) -> argparse.Namespace | None:
    """The command line as `@hydra.main` will read it, or None where Hydra would refuse it or exit
    (`--version`, a bad flag): Hydra then says so itself."""
    parser = get_args_parser()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            return parser.parse_intermixed_args(args=args)
        except SystemExit:
            return None
