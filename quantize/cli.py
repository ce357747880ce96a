"""``qlstm quantize``: fixed-point quantisation (PTQ or Brevitas QAT)"""

from __future__ import annotations

import argparse

from qlstm.errors import QlstmError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quantize",
        help="fixed-point quantisation (PTQ or Brevitas QAT)",
        description="fixed-point quantisation (PTQ or Brevitas QAT)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise QlstmError("`qlstm quantize` is not implemented yet (issue 4)")
