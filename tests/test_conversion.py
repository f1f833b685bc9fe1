"""Pixel conversion: budget, polarity, equalisation (synthetic data, values computed here)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pydicom import dcmread

from dicom_gateway.conversion import (
    MAX_PIXELS,
    MIN_PIXELS,
    convert_dataset,
    equalize_hist,
    min_max_uint8,
    smart_resize,
)


def test_smart_resize_keeps_budget_and_grid() -> None:
    for h, w in [(1955, 1841), (3000, 2500), (100, 80), (476, 476), (2000, 500)]:
        rh, rw = smart_resize(h, w)
        assert rh % 28 == 0 and rw % 28 == 0
        assert MIN_PIXELS <= rh * rw <= MAX_PIXELS
        assert abs(rh / rw - h / w) / (h / w) < 0.15


def test_min_max_and_equalize() -> None:
    x = np.array([[100, 200], [300, 1100]], dtype=np.uint16)
    assert min_max_uint8(x).tolist() == [[0, 25], [51, 255]]
    img = np.array([[0, 0], [10, 20]], dtype=np.uint8)
    # cdf = 2,3,4 at 0,10,20 -> (cdf-2)*255/2
    assert equalize_hist(img).tolist() == [[0, 0], [128, 255]]


def test_monochrome1_and_2_give_the_same_input(rg1) -> None:  # type: ignore[no-untyped-def]
    ds1 = dcmread(rg1)
    ds2 = dcmread(rg1)
    bits = int(ds2.BitsStored)
    ds2.PixelData = ((2**bits - 1) - ds2.pixel_array).astype(np.uint16).tobytes()
    ds2.PhotometricInterpretation = "MONOCHROME2"
    a, b = convert_dataset(ds1), convert_dataset(ds2)
    assert (a.width, a.height) == (b.width, b.height)
    pa = np.asarray(Image.open(io.BytesIO(a.png)), dtype=np.int16)
    pb = np.asarray(Image.open(io.BytesIO(b.png)), dtype=np.int16)
    assert np.abs(pa - pb).max() <= 1


def test_rg1_looks_like_a_chest_radiograph(rg1) -> None:  # type: ignore[no-untyped-def]
    img = convert_dataset(dcmread(rg1))
    arr = np.asarray(Image.open(io.BytesIO(img.png)).convert("L"), dtype=np.float64)
    h, w = arr.shape
    assert img.width * img.height <= MAX_PIXELS
    lungs = np.concatenate([arr[h // 4: h // 2, w // 6: w // 3].ravel(),
                            arr[h // 4: h // 2, 2 * w // 3: 5 * w // 6].ravel()])
    mediastinum = arr[h // 4: h // 2, 9 * w // 20: 11 * w // 20]
    assert lungs.mean() < mediastinum.mean() - 30  # lungs dark, mediastinum bright
