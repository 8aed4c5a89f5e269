"""ProductRef and Provenance: validation, header and FITS-table round trips, name-based UUIDs."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from astropy.io import fits
from hypothesis import given, settings
from hypothesis import strategies as st

from obsflow.exceptions import ProductFileError
from obsflow.models import DataId, FileUse, ProductRef, Provenance, RefFileUse, StepRecord

DID = DataId("01234", 1, 2, 3, "WRA1")


def test_data_id_basename_and_round_trip() -> None:
    assert DID.basename == "01234001002_00003_wra1"
    assert DataId.from_dict(DID.as_dict()) == DID


def test_ref_validates_kind_run_and_uuid() -> None:
    with pytest.raises(ValueError, match="allowed: cal, cat, clr, crf, i2d, phot, rate, rateints, segm, uncal"):
        ProductRef("bogus", DID, "prompt")
    with pytest.raises(ValueError, match="run name '../x'"):
        ProductRef("cal", DID, "../x")
    with pytest.raises(ValueError, match="run name"):
        ProductRef("cal", DID, "x" * 49)
    with pytest.raises(ValueError, match="32 lowercase hex"):
        ProductRef("cal", DID, "prompt", "ABC")
    a, b = ProductRef("cal", DID, "prompt"), ProductRef("cal", DID, "prompt")
    assert a.uuid != b.uuid and len(a.uuid) == 32
    light_curve = ProductRef("phot", DID, "prompt")  # a table, not FITS
    assert light_curve.relpath().endswith(f"/{DID.basename}_phot.ecsv")
    catalog = ProductRef("cat", DID, "prompt")  # a mosaic's source catalog, a table too
    assert catalog.relpath().endswith(f"/{DID.basename}_cat.ecsv")
    assert ProductRef("segm", DID, "prompt").relpath().endswith("_segm.fits")


def test_relpath_is_unique_per_product_and_keeps_the_file_name() -> None:
    ref = ProductRef("cal", DID, "prompt", "0123456789abcdef0123456789abcdef")
    assert ref.relpath() == "prompt/01234/01234001002_00003_wra1/0123456789ab/" \
                            "01234001002_00003_wra1_cal.fits"
    assert ProductRef.from_dict(ref.as_dict()) == ref


def test_derived_uuids_are_stable_and_distinct() -> None:
    one = ProductRef.derived("rate", DID, "prompt", "abc")
    assert one == ProductRef.derived("rate", DID, "prompt", "abc")
    others = {ProductRef.derived("cal", DID, "prompt", "abc").uuid,
              ProductRef.derived("rate", DID, "reprocess-1", "abc").uuid,
              ProductRef.derived("rate", DID, "prompt", "abd").uuid,
              ProductRef.derived("rate", DataId("01234", 1, 2, 4, "WRA1"), "prompt", "abc").uuid}
    assert one.uuid not in others and len(others) == 4


def test_header_round_trip_and_clear_errors() -> None:
    ref = ProductRef("rate", DID, "prompt")
    header = fits.Header()
    ref.to_header(header)
    assert ProductRef.from_header(header, DID, "x_rate.fits") == ref
    del header["RUNNAME"]
    with pytest.raises(ProductFileError, match="x_rate.fits: no product reference .*RUNNAME"):
        ProductRef.from_header(header, DID, "x_rate.fits")
    header["RUNNAME"], header["PRODUUID"] = "prompt", "nothex"
    with pytest.raises(ProductFileError, match="x_rate.fits: product UUID 'nothex'"):
        ProductRef.from_header(header, DID, "x_rate.fits")


_text = st.text(alphabet=string.printable + "éπ€ ", max_size=300)
_params = st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=12),
                          st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=False),
                                    st.booleans(), _text), max_size=6)


@st.composite
def provenances(draw: st.DrawFn) -> Provenance:
    refs = draw(st.lists(st.builds(lambda k: ProductRef(k, DID, "prompt"),
                                   st.sampled_from(["uncal", "rate"])), max_size=3))
    return Provenance(
        run=draw(st.sampled_from(["prompt", "reprocess-2027"])), software=draw(_text),
        recipe=draw(_text), context=draw(st.none() | st.integers(1, 10**6)), inputs=tuple(refs),
        references=tuple(RefFileUse(draw(_text), draw(_text), "ab" * 32)
                         for _ in range(draw(st.integers(0, 12)))),
        steps=tuple(StepRecord(draw(_text), draw(_text), draw(_params))
                    for _ in range(draw(st.integers(0, 12)))),
        input_files=tuple(FileUse(draw(_text), "cd" * 32) for _ in range(draw(st.integers(0, 4)))))


@settings(max_examples=60, deadline=None)
@given(provenances())
def test_provenance_survives_json_and_the_fits_table(prov: Provenance) -> None:
    assert Provenance.from_json(prov.to_json()) == prov
    assert Provenance.from_hdu(prov.to_hdu()) == prov


def test_provenance_table_written_to_disk_is_whole(tmp_path: Path) -> None:
    """A long document (many 1024-character rows, blanks at row edges) comes back whole."""
    params = {f"p{k}": " " * (k % 7) + "x" * (1000 + k) + " " * (k % 5) for k in range(9)}
    prov = Provenance("prompt", "0.1.0", "image", 3,
                      steps=(StepRecord("jump", "COMPLETE", params),),
                      references=tuple(RefFileUse(f"T{k}", f"file_{k}.fits", "e" * 64)
                                       for k in range(40)))
    path = tmp_path / "p.fits"
    fits.HDUList([fits.PrimaryHDU(), prov.to_hdu()]).writeto(path)
    with fits.open(path) as hdul:
        assert len(hdul["PROVENANCE"].data) > 9
        assert Provenance.from_hdu(hdul["PROVENANCE"], path.name) == prov
        hdul["PROVENANCE"].header["PROVLEN"] += 1
        with pytest.raises(ProductFileError, match="p.fits: PROVENANCE holds .* PROVLEN says"):
            Provenance.from_hdu(hdul["PROVENANCE"], path.name)


def test_summary_keywords_keep_long_file_names_whole() -> None:
    """A registry's stored names are long: the value stays whole, the comment gives way
    (the suite turns astropy's 'comment will be truncated' warning into an error)."""
    long_name = "obsflow-w_wra1_saturation_0001_20261130T133809_5a9e19a8.fits"
    prov = Provenance("prompt", "0.1.0", "image", 2,
                      references=(RefFileUse("SATURATION", long_name, "a" * 64),
                                  RefFileUse("GAIN", "g.fits", "b" * 64)),
                      steps=(StepRecord("jump", "SKIPPED: by request", {}),))
    header = fits.Header()
    prov.write_keywords(header)
    text = header.tostring()
    assert header["R_SATURA"] == long_name and header.comments["R_SATURA"] == ""
    assert header.comments["R_GAIN"] == "GAIN reference file"
    assert (header["RECIPE"], header["REFCTX"], header["S_JUMP"]) == ("image", 2, "SKIPPED")
    assert len(text) % 80 == 0
