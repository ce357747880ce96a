"""``qlstm train``: train a float LSTM/GRU predictor"""

from __future__ import annotations

import argparse

from qlstm.errors import QlstmError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a float LSTM/GRU predictor", description="train a float LSTM/GRU predictor"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise QlstmError("`qlstm train` is not implemented yet (issue 3)")
