"""Pixel conversion: every LUT path against values computed here, independently."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from dicom_gateway.imaging.conversion import (
    MAX_PIXELS,
    MIN_PIXELS,
    ConversionError,
    convert_dataset,
    equalize_hist,
    mimic_gray,
    min_max_uint8,
    smart_resize,
    window_gray,
)
from tests.peers import sample_file

RAMP = np.arange(0, 4096, 16, dtype=np.uint16).reshape(16, 16)  # 0..4080, 12 bits


def synthetic(pixels: np.ndarray = RAMP, photometric: str = "MONOCHROME2",
              **attrs: object) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def linear_window(x: np.ndarray, c: float, w: float, ymax: float = 255.0) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, written out here."""
    y = ((x - (c - 0.5)) / (w - 1) + 0.5) * ymax
    y = np.where(x <= c - 0.5 - (w - 1) / 2, 0, y)
    return np.where(x > c - 0.5 + (w - 1) / 2, ymax, y)


def close(a: np.ndarray, b: np.ndarray, tol: float = 1.0) -> bool:
    return bool(np.abs(a.astype(np.float64) - b.astype(np.float64)).max() <= tol)


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


def test_mimic_lut_path_equals_the_plain_steps() -> None:
    rng = np.random.default_rng(1)
    px = rng.integers(200, 3000, size=(40, 30)).astype(np.uint16)
    ds = synthetic(px, "MONOCHROME1")
    expected = equalize_hist(min_max_uint8(int(px.min()) + int(px.max()) - px.astype(int)))
    assert np.array_equal(mimic_gray(ds, px, []), expected)


def test_mimic_padding_is_excluded_and_black() -> None:
    px = RAMP.copy()
    px[:2, :] = 4095  # padding band
    ds = synthetic(px, PixelPaddingValue=4095)
    out = mimic_gray(ds, px, [])
    assert (out[:2] == 0).all()
    body = px[2:]
    expected = equalize_hist(min_max_uint8(body))
    assert np.array_equal(out[2:], expected)
    ranged = synthetic(px, PixelPaddingValue=4095, PixelPaddingRangeLimit=4000)
    assert (mimic_gray(ranged, px, [])[px >= 4000] == 0).all()


def test_mimic_padding_found_in_stored_values_when_the_slope_is_negative() -> None:
    px = RAMP.copy()
    px[:2, :] = 4095  # padding band, declared in stored values
    ds = synthetic(px, PixelPaddingValue=4095, RescaleSlope=-1, RescaleIntercept=4095)
    out = mimic_gray(ds, px, notes := [])
    assert any("negative RescaleSlope" in n for n in notes)
    assert (out[:2] == 0).all()  # padding black, not the brightest value after the flip
    body = px[2:].astype(int)
    expected = equalize_hist(min_max_uint8(-body))  # polarity from the Modality LUT
    assert np.array_equal(out[2:], expected)


def test_window_linear_with_rescale() -> None:
    ds = synthetic(RescaleSlope=2, RescaleIntercept=-100, WindowCenter=3000, WindowWidth=2000)
    out = window_gray(ds, RAMP, [])
    expected = linear_window(RAMP * 2.0 - 100, 3000, 2000)
    assert close(out, expected)


def test_window_linear_exact_and_sigmoid() -> None:
    x = RAMP.astype(np.float64)
    exact = synthetic(WindowCenter=2000, WindowWidth=1000, VOILUTFunction="LINEAR_EXACT")
    assert close(window_gray(exact, RAMP, []), np.clip((x - 2000) / 1000 + 0.5, 0, 1) * 255)
    sig = synthetic(WindowCenter=2000, WindowWidth=1000, VOILUTFunction="SIGMOID")
    assert close(window_gray(sig, RAMP, []), 255 / (1 + np.exp(-4 * (x - 2000) / 1000)))


def test_window_voi_lut_sequence() -> None:
    item = Dataset()
    item.LUTDescriptor = [256, 1000, 16]
    lut = (np.linspace(0, 1, 256) ** 2 * 3000 + 500).astype(np.uint16)
    item.LUTData = lut.tolist()
    ds = synthetic(VOILUTSequence=[item])
    idx = np.clip(RAMP.astype(int) - 1000, 0, 255)
    expected = (lut[idx] - lut.min()) / (lut.max() - lut.min()) * 255
    assert close(window_gray(ds, RAMP, []), expected)


def test_presentation_lut_and_monochrome1_invert_once() -> None:
    base = window_gray(synthetic(WindowCenter=2048, WindowWidth=4096), RAMP, [])
    inverse2 = window_gray(
        synthetic(WindowCenter=2048, WindowWidth=4096, PresentationLUTShape="INVERSE"), RAMP, [])
    mono1 = window_gray(synthetic(photometric="MONOCHROME1", WindowCenter=2048,
                                  WindowWidth=4096), RAMP, [])
    mono1_inverse = window_gray(synthetic(photometric="MONOCHROME1", WindowCenter=2048,
                                          WindowWidth=4096, PresentationLUTShape="INVERSE"),
                                RAMP, [])
    assert close(inverse2, 255 - base.astype(int))
    assert np.array_equal(mono1, inverse2)
    assert np.array_equal(mono1_inverse, mono1)  # the same inversion, not a double one


def test_window_percentile_fallback() -> None:
    notes: list[str] = []
    out = window_gray(synthetic(), RAMP, notes)
    lo, hi = np.percentile(RAMP.astype(float), [0.5, 99.5])
    assert close(out, np.clip((RAMP - lo) / (hi - lo), 0, 1) * 255)
    assert "percentile" in notes[0]


def test_monochrome1_and_2_give_the_same_input(rg1: Path) -> None:
    ds1 = dcmread(rg1)
    ds2 = dcmread(rg1)
    bits = int(ds2.BitsStored)
    ds2.PixelData = ((2**bits - 1) - ds2.pixel_array).astype(np.uint16).tobytes()
    ds2.PhotometricInterpretation = "MONOCHROME2"
    a, b = convert_dataset(ds1), convert_dataset(ds2)
    assert a.png == b.png


def png_array(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)


def test_lossless_j2k_is_identical_and_lossy_is_close() -> None:
    uncr = convert_dataset(dcmread(sample_file("RG1_UNCR.dcm")))
    j2kr = convert_dataset(dcmread(sample_file("RG1_J2KR.dcm")))
    j2ki = convert_dataset(dcmread(sample_file("RG1_J2KI.dcm")))
    assert uncr.png == j2kr.png
    mse = ((png_array(uncr.png) - png_array(j2ki.png)) ** 2).mean()
    assert 10 * np.log10(255**2 / mse) >= 40.0  # stated bound: PSNR >= 40 dB (measured ~51)


def test_rg1_model_input_looks_like_a_chest_radiograph(rg1: Path, tmp_path: Path) -> None:
    img = convert_dataset(dcmread(rg1))
    out = tmp_path / "rg1_model_input.png"
    out.write_bytes(img.png)
    arr = np.asarray(Image.open(out).convert("L"), dtype=np.float64)
    h, w = arr.shape
    assert img.width * img.height <= MAX_PIXELS
    lungs = np.concatenate([arr[h // 4: h // 2, w // 6: w // 3].ravel(),
                            arr[h // 4: h // 2, 2 * w // 3: 5 * w // 6].ravel()])
    mediastinum = arr[h // 4: h // 2, 9 * w // 20: 11 * w // 20]
    assert lungs.mean() < mediastinum.mean() - 30  # lungs dark, mediastinum bright


def test_guards() -> None:
    with pytest.raises(ConversionError, match="exceeds the limit"):
        convert_dataset(synthetic(), max_source_pixels=100)
    with pytest.raises(ConversionError, match="BitsAllocated"):
        convert_dataset(synthetic(BitsAllocated=12))
    with pytest.raises(ConversionError, match="PhotometricInterpretation"):
        convert_dataset(synthetic(photometric="PALETTE COLOR"))
    no_pixels = synthetic()
    del no_pixels.PixelData
    no_pixels.FloatPixelData = b"\x00" * 4
    with pytest.raises(ConversionError, match="float pixel data"):
        convert_dataset(no_pixels)
    broken = synthetic()
    broken.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
    broken.PixelData = b"\x00" * 10
    with pytest.raises(ConversionError, match="JPEG Baseline"):
        convert_dataset(broken)


def test_multiframe_uses_first_frame_with_note() -> None:
    frames = np.stack([RAMP, RAMP[::-1]])
    ds = synthetic(frames[0])
    ds.NumberOfFrames = 2
    ds.PixelData = frames.astype(np.uint16).tobytes()
    img = convert_dataset(ds)
    assert img.notes == ("multi-frame (2): first frame used",)
    assert img.png == convert_dataset(synthetic()).png


@pytest.mark.parametrize("planar", [0, 1])
def test_rgb_input_is_its_luminance(planar: int) -> None:
    """Quadrants of pure red, green, blue and white: ITU-R BT.601 luminance (0.299 R +
    0.587 G + 0.114 B) gives 76, 149, 29 and 255, whichever way the planes are stored."""
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[:8, :8] = (255, 0, 0)
    rgb[:8, 8:] = (0, 255, 0)
    rgb[8:, :8] = (0, 0, 255)
    rgb[8:, 8:] = (255, 255, 255)
    ds = synthetic(RAMP, photometric="RGB")
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, planar
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = (rgb.transpose(2, 0, 1) if planar else rgb).tobytes()
    expected = {"window": (76, 149, 29, 255),  # the luminance itself
                # four equal areas, equalised: 0, 1/3, 2/3, 1 in luminance order (B, R, G, W)
                "mimic": (85, 170, 0, 255)}
    for conversion, (red, green, blue, white) in expected.items():
        img = convert_dataset(ds, conversion)
        assert "luminance" in img.notes[0]
        out = np.asarray(Image.open(io.BytesIO(img.png)))
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
        h, w = out.shape[:2]
        centres = [out[h // 4, w // 4, 0], out[h // 4, 3 * w // 4, 0],
                   out[3 * h // 4, w // 4, 0], out[3 * h // 4, 3 * w // 4, 0]]
        assert centres == [red, green, blue, white], conversion
