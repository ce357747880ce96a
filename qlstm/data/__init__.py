"""Magnet-voltage data: synthetic generator, loaders, windowing, splits, normalisation.

The synthetic data is modelled on Wielgosz et al., NIM A 867 (2017) 40; it is not CERN data.
See ``docs/data.md`` for the generator's model, the file schemas and what is refused or repaired.
"""

from qlstm.data.events import MAX_GAP_SAMPLES, SAMPLING_TOLERANCE, Event, EventSet
from qlstm.data.formats import load_events, load_for_model, save_events
from qlstm.data.synthetic import SyntheticConfig, components, generate
from qlstm.data.windows import Split, Windows, fit_normalisation, make_windows, split_events, window_count

__all__ = [
    "MAX_GAP_SAMPLES",
    "SAMPLING_TOLERANCE",
    "Event",
    "EventSet",
    "Split",
    "SyntheticConfig",
    "Windows",
    "components",
    "fit_normalisation",
    "generate",
    "load_events",
    "load_for_model",
    "make_windows",
    "save_events",
    "split_events",
    "window_count",
]
