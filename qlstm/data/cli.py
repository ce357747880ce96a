"""``qlstm data``: generate, load and inspect magnet-voltage recordings"""

from __future__ import annotations

import argparse

from qlstm.errors import QlstmError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="generate, load and inspect magnet-voltage recordings",
        description="generate, load and inspect magnet-voltage recordings",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise QlstmError("`qlstm data` is not implemented yet (issue 2)")
