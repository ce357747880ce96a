"""``qlstm hls``: generate an hls4ml project and its C simulation"""

from __future__ import annotations

import argparse

from qlstm.errors import QlstmError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "hls",
        help="generate an hls4ml project and its C simulation",
        description="generate an hls4ml project and its C simulation",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise QlstmError("`qlstm hls` is not implemented yet (issue 5)")
