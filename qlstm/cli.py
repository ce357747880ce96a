"""The one command-line entry point, ``qlstm``, with a subcommand per pipeline stage.

Each stage module exposes ``register(subparsers)``, which adds its parser (with ``--help`` text
for every option) and sets ``func`` to a callable ``func(args) -> int``. The list below is
explicit: nothing is discovered by scanning folders. Stage modules import their heavy
dependencies (torch, hls4ml, onnx) inside ``func``, so ``qlstm --help`` stays fast.

Errors the user can fix are raised as :class:`qlstm.errors.QlstmError` and printed here as one
line, ``qlstm <stage>: error: <message>``, with a non-zero exit status and no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys

from qlstm import __version__
from qlstm.errors import QlstmError

#: The stage module of each command, so ``qlstm <command>`` imports only that one (start-up time).
COMMANDS: dict[str, str] = {
    "data": "qlstm.data.cli", "train": "qlstm.train.cli", "import": "qlstm.importers",
    "quantize": "qlstm.quantize.cli", "export": "qlstm.export.cli", "hls": "qlstm.hls.cli",
    "firmware": "qlstm.firmware_sim.cli", "rtl": "qlstm.rtl.cli", "predict": "qlstm.predict",
    "detect": "qlstm.detect.cli", "report": "qlstm.report.cli", "run": "qlstm.pipeline",
    "explore": "qlstm.explore.cli",
}  # fmt: skip
#: Every stage module, in the order ``qlstm --help`` lists the commands.
STAGES: tuple[str, ...] = tuple(COMMANDS.values())


def _command(argv: list[str]) -> str | None:
    """The subcommand ``argv`` names after the top-level options -v/--threads, else None."""
    it = iter(argv)
    for tok in it:
        if tok == "--threads":
            next(it, None)
        elif not tok.startswith("-"):
            return tok
        elif not (tok.startswith("--threads=") or tok == "--verbose" or set(tok[1:]) == {"v"}):
            return None  # -h, --version, or an error argparse reports with every command listed
    return None


#: Said after every command's options: the options of ``qlstm`` itself go before the command.
GLOBAL_OPTIONS = (
    "options of qlstm itself, before the command: qlstm [-v] [--threads N] <command> ... "
    "(--threads N: threads for PyTorch, OpenMP, BLAS, numba and the simulators; see qlstm --help)"
)


class _Parser(argparse.ArgumentParser):
    """argparse's parser whose error for ``--threads`` after the command says where it goes."""

    def error(self, message: str):
        if "unrecognized arguments" in message and "--threads" in message:
            message += " (--threads is an option of qlstm itself: qlstm --threads N <command> ...)"
        super().error(message)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``qlstm`` parser (every stage); with ``argv`` naming a known command, only that stage."""
    parser = _Parser(
        prog="qlstm",
        description=(
            "Take an LSTM/GRU predictor of superconducting-magnet voltage from data to FPGA firmware: "
            "data -> train -> quantize -> export -> hls -> firmware simulation -> report. "
            "Run `qlstm <command> --help` for each command's options."
        ),
    )
    parser.add_argument("--version", action="version", version=f"qlstm {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="threads for PyTorch, OpenMP, BLAS, numba and the simulators (default: $QLSTM_THREADS, "
        "else $OMP_NUM_THREADS, else the cores this process may use); waiting threads sleep "
        "(OMP_WAIT_POLICY=PASSIVE), so a loaded machine slows qlstm down gracefully",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    cmd = None if argv is None else _command(argv)
    for name in (COMMANDS[cmd],) if cmd in COMMANDS else STAGES:
        importlib.import_module(name).register(sub)
    for stage in sub.choices.values():  # every command's --help names the global options
        stage.epilog = f"{stage.epilog}\n\n{GLOBAL_OPTIONS}" if stage.epilog else GLOBAL_OPTIONS
    return parser


def _terminate(signum: int, frame: object) -> None:  # noqa: ARG001
    """SIGTERM unwinds like Ctrl-C, so staged outputs and temporary files are removed."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", type=int)
    known, _ = pre.parse_known_args(argv)
    from qlstm import threads

    try:  # before the stages load NumPy's BLAS and torch: they read the environment once
        threads.configure(known.threads)
    except QlstmError as exc:
        print(f"qlstm: error: {exc}", file=sys.stderr)
        return exc.exit_code
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("qlstm.threads").info("%s", threads.decision)
    try:
        return int(args.func(args) or 0)
    except QlstmError as exc:
        print(f"qlstm {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"qlstm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
