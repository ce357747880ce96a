"""``qlstm firmware``: bit-exact firmware simulation: trace and deviation check"""

from __future__ import annotations

import argparse

from qlstm.errors import QlstmError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "firmware",
        help="bit-exact firmware simulation: trace and deviation check",
        description="bit-exact firmware simulation: trace and deviation check",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise QlstmError("`qlstm firmware` is not implemented yet (issue 6)")
