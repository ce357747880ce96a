"""The published hls4ml builds the estimator is checked against, and its error on each."""

from __future__ import annotations

from dataclasses import dataclass

from qlstm.hls_config import HlsConfig

from .model import DEFAULT_TABLE_SHAPE, FAMILY_DELAYS, Strategy, _LayerShape
from .resources import Usage, _layer_usage
from .schedule import _step

# ----------------------------------------------------------------------------- calibration
#: Where the published builds below come from: Vivado HLS reports committed with the hls4ml
#: projects of the University of Washington group (authors of Khoda et al.) in a public
#: repository. They are first-hand tool output with their exact configuration, not the paper's
#: tables (which we could not read); they are C-synthesis estimates, not post-route figures.
UW_REPO = "github.com/uw-acme/HLS4ML_VS_MANUAL"


@dataclass(frozen=True)
class CalibrationPoint:
    """One published hls4ml synthesis result of a recurrent layer, with its exact configuration.

    ``stack_cycles``: the ``lstm_stack``/``gru_stack`` latency (min, max), i.e. the whole layer
    over its L steps; ``cell``: the ``*_static`` instance's resources (one cell). ``fitted``
    names the quantities used to set a constant of this module (the others are held out)."""

    name: str
    source: str
    cell: str
    units: int
    steps: int
    features: int
    width: int  # every type ap_fixed<width, 6> (hls4ml's default precision)
    part: str
    family: str
    clock_ns: float
    strategy: Strategy
    rf_ih: int
    rf_hh: int
    stack_cycles: tuple[int, int]
    cell_usage: Usage
    fitted: tuple[str, ...] = ()


# fmt: off
CALIBRATION: tuple[CalibrationPoint, ...] = (
    CalibrationPoint(
        "LSTM(20) top tagging, RF 1, latency",
        f"{UW_REPO} @2447c23, src/hdl/TopTagging-HLS/model_lstm_hls/hls4ml_prj "
        "(hls4ml 1.0.0, Vivado HLS 2019.1): syn/report/csynth.xml, lstm_static_*_csynth.xml",
        "lstm", 20, 20, 6, 16, "xc7vx690t-ffg1761-2", "kintex7", 5.0, "latency", 1, 1,
        (339, 339), Usage(dsp=1494, lut=73771, ff=44934, bram_18k=40),
        fitted=("dsp", "lut", "bram_18k"),
    ),
    CalibrationPoint(
        "GRU(20) top tagging, RF 1, latency",
        f"{UW_REPO} @2447c23, src/hdl/TopTagging-HLS/model_gru_hls/hls4ml_prj "
        "(hls4ml 1.0.0, Vivado HLS 2019.1): gru_stack_*_csynth.rpt",
        "gru", 20, 20, 6, 16, "xc7vx690t-ffg1761-2", "kintex7", 5.0, "latency", 1, 1,
        (339, 339), Usage(dsp=1244, lut=53854, ff=34535, bram_18k=30),
    ),
    CalibrationPoint(
        "GRU(20) top tagging, RF 30 (recurrent 20), resource",
        f"{UW_REPO} @79a401e, documents/Benchmarks/RNN/toptagging/hls/toptagging_gru_hls4ml_prj "
        "(hls4ml 1.0.0, Vivado HLS 2019.2): gru_stack_ap_fixed_16_6_*_csynth.rpt, parameters.h",
        "gru", 20, 20, 6, 16, "xcu250-figd2104-2L-e", "kintexu", 5.0, "resource", 30, 20,
        (801, 821), Usage(dsp=132, lut=18000, ff=8157, bram_18k=63),
    ),
    CalibrationPoint(
        "GRU(120) flavour tagging, RF 30, resource",
        f"{UW_REPO} @79a401e, documents/Benchmarks/RNN/ftag/hls/ftag_gru_hls4ml_prj "
        "(hls4ml 1.0.0, Vivado HLS 2019.2): gru_stack/gru_static_ap_fixed_16_6_*_csynth.rpt",
        "gru", 120, 15, 6, 16, "xcu250-figd2104-2L-e", "kintexu", 5.0, "resource", 30, 30,
        (601, 616), Usage(dsp=1872, lut=127081, ff=75740, bram_18k=852),
        fitted=("lut", "bram_18k"),
    ),
)
# fmt: on


@dataclass(frozen=True)
class CalibrationRow:
    point: str
    quantity: str  # "latency_cycles", "dsp", "lut", "ff", "bram_18k"
    published: tuple[int, int]
    estimated: int
    fitted: bool

    @property
    def error(self) -> float:
        """Relative error of the ESTIMATE against the middle of the published range."""
        mid = (self.published[0] + self.published[1]) / 2
        return (self.estimated - mid) / mid


def estimate_point(p: CalibrationPoint) -> tuple[int, Usage]:
    """ESTIMATED (layer cycles over the L steps, one cell's resources) for a calibration point."""
    d = FAMILY_DELAYS[p.family]
    layer = _LayerShape(p.cell, p.features, p.units, *(p.width,) * 5, *DEFAULT_TABLE_SHAPE)
    s = HlsConfig(strategy=p.strategy)
    ch = _step(layer, s, p.clock_ns, d, p.rf_ih, p.rf_hh)
    return ch.total() * p.steps, _layer_usage(layer, s, d, p.rf_ih, p.rf_hh, ch.boundaries)


def calibration_rows() -> list[CalibrationRow]:
    """Every calibration point's published figure beside the estimator's (docs/estimator.md)."""
    rows = []
    for p in CALIBRATION:
        cycles, usage = estimate_point(p)
        rows.append(CalibrationRow(p.name, "latency_cycles", p.stack_cycles, cycles, "latency" in p.fitted))
        for q in ("dsp", "lut", "ff", "bram_18k"):
            pub = getattr(p.cell_usage, q)
            rows.append(CalibrationRow(p.name, q, (pub, pub), getattr(usage, q), q in p.fitted))
    return rows
