"""``qlstm export``: export ONNX / QONNX files"""

from __future__ import annotations

import argparse

from qlstm.errors import QlstmError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export ONNX / QONNX files", description="export ONNX / QONNX files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise QlstmError("`qlstm export` is not implemented yet (issue 7)")
