"""Synthetic fibroblast plates for the demo, the tests and the benchmarks.

`render` draws one 2-channel field (actin, nuclei) from a biological state, `plates` lays out
wells and their ground truth, `writers` names files like a microscope export, and `generate`
ties them into plate sets on disk. numpy/scipy/pandas/tifffile only (no torch).
"""

from fibroclass.simulate.compounds import Compound, dilution_series, hill, library
from fibroclass.simulate.exports import EXPORT_WRITERS, export_index
from fibroclass.simulate.generate import SimulatedPlates, simulate_screen, simulate_training_set
from fibroclass.simulate.plates import SCREEN_ARTEFACTS, TRAINING_ARTEFACTS, ArtefactRates
from fibroclass.simulate.render import FieldState, RenderedField, render_field
from fibroclass.simulate.writers import WRITERS, Writer, get_writer

# Harmony, MetaXpress HTD, OME-TIFF, LoadData, OME-Zarr layouts and their bit-depth/vignette variants.
WRITERS.update(EXPORT_WRITERS)

__all__ = [
    "WRITERS",
    "SCREEN_ARTEFACTS",
    "TRAINING_ARTEFACTS",
    "ArtefactRates",
    "Compound",
    "EXPORT_WRITERS",
    "FieldState",
    "RenderedField",
    "SimulatedPlates",
    "Writer",
    "dilution_series",
    "export_index",
    "get_writer",
    "hill",
    "library",
    "render_field",
    "simulate_screen",
    "simulate_training_set",
]
