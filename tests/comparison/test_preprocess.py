from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from comparison import load_image


def _cr() -> str:
    p = get_testdata_file("RG1_UNCR.dcm")
    assert p, "pydicom-data must provide RG1_UNCR.dcm"
    return p


def test_real_cr_is_prepared() -> None:
    img = load_image(_cr(), size=512)
    assert img.pixels.dtype == np.float32 and img.pixels.ndim == 2
    assert max(img.shape) == 512 and img.shape == (512, 482)  # aspect kept (1955 x 1841)
    assert 0.0 <= img.pixels.min() and img.pixels.max() <= 1.0
    assert (img.rows, img.cols, img.bits_stored) == (1955, 1841, 15)
    assert img.photometric == "MONOCHROME1" and img.view_position == "PA"
    assert img.pixel_spacing_mm is None  # the file says 0\0: unknown
    # MONOCHROME1 is inverted: the lungs (upper-middle, lateral) are darker than the mediastinum
    h, w = img.shape
    lung = img.pixels[int(0.3 * h) : int(0.45 * h), int(0.2 * w) : int(0.3 * w)].mean()
    spine = img.pixels[int(0.3 * h) : int(0.45 * h), int(0.47 * w) : int(0.53 * w)].mean()
    assert lung < spine - 0.1


def test_monochrome1_and_monochrome2_are_inverses(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_cr())
    m2 = copy.deepcopy(ds)
    m2.PhotometricInterpretation = "MONOCHROME2"
    m2.save_as(tmp_path / "m2.dcm")
    a = load_image(_cr(), size=256).pixels
    b = load_image(tmp_path / "m2.dcm", size=256).pixels
    assert np.allclose(a, 1.0 - b, atol=1e-5)


@pytest.mark.parametrize("name", ["RG1_J2KR.dcm", "RG1_J2KI.dcm"])
def test_jpeg2000_variants_decode_like_the_uncompressed(name: str) -> None:
    p = get_testdata_file(name)
    if p is None:
        pytest.skip(f"pydicom-data lacks {name}")
    ds = pydicom.dcmread(p)
    assert ds.file_meta.TransferSyntaxUID.is_compressed
    ref = load_image(_cr(), size=256).pixels
    got = load_image(p, size=256).pixels
    assert got.shape == ref.shape
    assert float(np.abs(got - ref).mean()) < 0.01  # lossless equal, lossy close


def test_anisotropic_spacing_is_resampled_to_square_mm(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_cr())
    ds.PixelSpacing = ["0.2", "0.4"]  # columns twice as wide as rows
    ds.save_as(tmp_path / "aniso.dcm")
    img = load_image(tmp_path / "aniso.dcm", size=512)
    # physical extent: 1955*0.2 = 391 mm tall, 1841*0.4 = 736 mm wide -> wide image
    assert img.shape[1] == 512 and abs(img.shape[0] - round(512 * 391 / 736.4)) <= 1
    assert img.spacing_mm == pytest.approx(736.4 / 512, rel=0.01)
    assert any("anisotropic" in n for n in img.notes)


def test_voi_lut_and_rescale_are_applied(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_cr())
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 2, -1000, "US"
    ds.WindowCenter, ds.WindowWidth = 2 * 15000 - 1000, 2 * 30000
    ds.save_as(tmp_path / "rescaled.dcm")
    a = load_image(_cr(), size=128).pixels
    b = load_image(tmp_path / "rescaled.dcm", size=128).pixels
    assert np.allclose(a, b, atol=1e-3)


def test_missing_file_and_no_pixels(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "nope.dcm")
    ds = pydicom.dcmread(_cr())
    del ds.PixelData
    ds.save_as(tmp_path / "empty.dcm")
    with pytest.raises(ValueError):
        load_image(tmp_path / "empty.dcm")
