"""``qlstm report``: latency/resource estimates and the run report"""

from __future__ import annotations

import argparse

from qlstm.errors import QlstmError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="latency/resource estimates and the run report",
        description="latency/resource estimates and the run report",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise QlstmError("`qlstm report` is not implemented yet (issue 8)")
