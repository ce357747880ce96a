"""``qlstm run``: the main job: data to report on the synthetic default"""

from __future__ import annotations

import argparse

from qlstm.errors import QlstmError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="the main job: data to report on the synthetic default",
        description="the main job: data to report on the synthetic default",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise QlstmError("`qlstm run` is not implemented yet (issue 8)")
