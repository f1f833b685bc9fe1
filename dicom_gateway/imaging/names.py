"""The names of the pixel-to-image conversions, importable without numpy or PIL.

Settings validate ``CXR_CONVERSION`` against these; the conversions themselves live in
``dicom_gateway/imaging/conversion.py`` (which needs numpy, PIL and pydicom's pixel handlers).
"""

from __future__ import annotations

MIMIC = "mimic"
WINDOW = "window"
CONVERSIONS = (MIMIC, WINDOW)
CONVERSION_VERSIONS = {MIMIC: "mimic-v1", WINDOW: "window-v1"}
