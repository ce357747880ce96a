"""``qlstm predict``: run a model on windows or a recording with a chosen backend"""

from __future__ import annotations

import argparse

from qlstm.errors import QlstmError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="run a model on windows or a recording with a chosen backend",
        description="run a model on windows or a recording with a chosen backend",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise QlstmError("`qlstm predict` is not implemented yet (issue 3)")
