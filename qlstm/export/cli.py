"""``qlstm export``: write a run folder's model as ONNX (float) or QONNX (quantized)"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "export a run folder's model as ONNX (float) or QONNX (quantized)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help=HELP,
        description=(
            f"{HELP}. ONNX: standard LSTM/GRU operators and a Gemm head, float32, dynamic batch. "
            "QONNX: the hls4ml firmware dataflow unrolled over the L time steps, every fixed-point "
            "type a Quant node, lookup-table sigmoid/tanh. The file is checked and executed once "
            "before it is written; its metadata holds L, k, channels, normalisation and types."
        ),
    )
    p.add_argument(
        "run_dir", type=Path, metavar="RUN_DIR", help="run folder holding model.json and weights.npz"
    )
    p.add_argument(
        "--format",
        metavar="{onnx,qonnx}",
        default=None,
        help="onnx (float model) or qonnx (needs a quantized run); default: qonnx for a quantized "
        "run, onnx otherwise",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output file; its folder must exist (default: RUN_DIR/model.onnx or RUN_DIR/model.qonnx.onnx)",
    )
    p.add_argument(
        "--verify",
        type=int,
        default=256,
        metavar="N",
        help="run the file on N held-out-like windows and compare it with its reference before "
        "writing it: float ONNX with the PyTorch model (max |diff| <= 1e-5), QONNX with the "
        "bit-exact firmware simulation (exact); stored in the metadata as qlstm.verified "
        "(default 256)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    import onnx

    from qlstm.export.api import export, summary

    out = export(args.run_dir, args.format, args.out, args.verify)
    meta = {p.key: p.value for p in onnx.load_model(str(out), load_external_data=False).metadata_props}
    print(out)
    print(f"verified on {summary(json.loads(meta['qlstm.verified']))}")
    return 0
