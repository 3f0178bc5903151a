"""Loading customer tables: formats, real-export quirks, and schema errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from exporter.data.loader import (
    DataSchemaError,
    LoadedData,
    encode_target,
    load_customers,
    normalize_frame,
)
from exporter.data.synthetic import NEW_PAYMENT_METHOD, generate_customers
from exporter.domain import schema

HEADER = ",".join(schema.ALL_COLUMNS)
#: Rows shaped like the public export, including a tenure-0 row with a blank " "
#: TotalCharges and a senior fiber customer who churned.
REAL_ROWS = [
    "7590-VHVEG,Female,0,Yes,No,1,No,No phone service,DSL,No,Yes,No,No,No,No,"
    "Month-to-month,Yes,Electronic check,29.85,29.85,No",
    "5575-GNVDE,Male,0,No,No,34,Yes,No,DSL,Yes,No,Yes,No,No,No,One year,No,"
    "Mailed check,56.95,1889.5,No",
    "4472-LVYGI,Female,0,Yes,Yes,0,No,No phone service,DSL,Yes,No,Yes,Yes,Yes,No,"
    "Two year,Yes,Bank transfer (automatic),52.55, ,No",
    "9305-CDSKC,Female,1,No,No,8,Yes,Yes,Fiber optic,No,No,Yes,No,Yes,Yes,"
    "Month-to-month,Yes,Electronic check,99.65,820.5,Yes",
    "3655-SNQYZ,Female,0,Yes,Yes,69,Yes,Yes,No,No internet service,No internet service,"
    "No internet service,No internet service,No internet service,No internet service,"
    "Two year,No,Credit card (automatic),24.95,1721.15,No",
]


def _write(path: Path, lines: list[str], *, bom: bool = False) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8-sig" if bom else "utf-8")
    return path


def _raw(n: int = 50, seed: int = 5) -> pd.DataFrame:
    """A generator frame with object columns, so single cells can be spoiled."""
    return generate_customers(n, seed=seed).astype(object)


# ------------------------------------------------------------------ round trips


@pytest.fixture(scope="module")
def generated() -> pd.DataFrame:
    return generate_customers(3_000, seed=8)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_generator_output_round_trips(tmp_path: Path, generated: pd.DataFrame, suffix: str) -> None:
    path = tmp_path / f"customers{suffix}"
    if suffix == ".parquet":
        generated.to_parquet(path, index=False)
    else:
        generated.to_csv(path, index=False)
    loaded = load_customers(path, require_target=True)
    pd.testing.assert_frame_equal(loaded.frame, generated, check_exact=True)
    assert loaded.extra_columns == ()
    assert dict(loaded.unknown_categories) == {}
    n_blank = int(generated["TotalCharges"].isna().sum())
    assert n_blank > 0
    assert dict(loaded.blank_numeric) == {"TotalCharges": n_blank}


def test_csv_and_parquet_load_identically(tmp_path: Path) -> None:
    df = generate_customers(2_000, seed=9, scenario="new_payment_method")
    df.to_csv(tmp_path / "a.csv", index=False)
    df.to_parquet(tmp_path / "a.parquet", index=False)
    from_csv = load_customers(tmp_path / "a.csv")
    from_parquet = load_customers(tmp_path / "a.parquet")
    pd.testing.assert_frame_equal(from_csv.frame, from_parquet.frame, check_exact=True)
    pd.testing.assert_frame_equal(from_csv.frame, normalize_frame(df).frame, check_exact=True)
    for result in (from_csv, from_parquet):
        assert dict(result.unknown_categories) == {"PaymentMethod": (NEW_PAYMENT_METHOD,)}
        wallet_rows = int((df["PaymentMethod"] == NEW_PAYMENT_METHOD).sum())
        assert dict(result.unknown_category_rows) == {"PaymentMethod": wallet_rows}


# ---------------------------------------------------------------- export quirks


def test_bom_and_blank_total_charges(tmp_path: Path) -> None:
    path = _write(tmp_path / "telco.csv", [HEADER, *REAL_ROWS], bom=True)
    loaded = load_customers(path, require_target=True)
    frame = loaded.frame
    assert tuple(frame.columns) == schema.ALL_COLUMNS
    assert frame[schema.ID_COLUMN].tolist()[0] == "7590-VHVEG"
    assert frame["SeniorCitizen"].dtype == np.int64
    assert frame["tenure"].dtype == np.int64
    assert frame["MonthlyCharges"].dtype == np.float64
    assert frame["TotalCharges"].dtype == np.float64
    assert frame["TotalCharges"].isna().tolist() == [False, False, True, False, False]
    assert frame.loc[1, "TotalCharges"] == 1889.5
    assert dict(loaded.blank_numeric) == {"TotalCharges": 1}
    assert frame[schema.TARGET].tolist() == ["No", "No", "No", "Yes", "No"]
    np.testing.assert_array_equal(encode_target(frame[schema.TARGET]), [0, 0, 0, 1, 0])
    assert pd.api.types.is_string_dtype(frame["Contract"].dtype)
    assert dict(loaded.unknown_categories) == {}


def test_whitespace_is_stripped_from_names_and_categories() -> None:
    raw = _raw()
    raw.loc[0, "Contract"] = "  Two year "
    raw.loc[1, "PaymentMethod"] = "\tMailed check"
    raw = raw.rename(columns={"Contract": " Contract ", "customerID": "\ufeffcustomerID"})
    loaded = normalize_frame(raw)
    assert loaded.frame.loc[0, "Contract"] == "Two year"
    assert loaded.frame.loc[1, "PaymentMethod"] == "Mailed check"
    assert tuple(loaded.frame.columns) == schema.ALL_COLUMNS
    assert dict(loaded.unknown_categories) == {}


def test_extra_columns_are_reported_and_dropped() -> None:
    raw = _raw()
    raw.insert(0, "score", 0.5)
    raw["region"] = "north"
    loaded = normalize_frame(raw)
    assert loaded.extra_columns == ("score", "region")
    assert tuple(loaded.frame.columns) == schema.ALL_COLUMNS


def test_unknown_categories_are_reported_not_rejected() -> None:
    raw = _raw()
    raw.loc[0:2, "InternetService"] = "Satellite"
    raw.loc[3, "InternetService"] = "5G"
    raw.loc[4, "gender"] = " "
    raw.loc[5, "SeniorCitizen"] = 2
    loaded = normalize_frame(raw)
    assert loaded.unknown_categories["InternetService"] == ("Satellite", "5G")
    assert loaded.unknown_category_rows["InternetService"] == 4
    assert loaded.unknown_categories["gender"] == ("",)
    assert pd.isna(loaded.frame.loc[4, "gender"])
    assert loaded.unknown_categories["SeniorCitizen"] == ("2",)
    assert loaded.frame.loc[0, "InternetService"] == "Satellite"


def test_missing_values_in_integer_columns_make_them_float() -> None:
    raw = _raw()
    raw.loc[0, "tenure"] = " "
    raw.loc[1, "MonthlyCharges"] = "NA"
    loaded = normalize_frame(raw)
    assert loaded.frame["tenure"].dtype == np.float64
    assert np.isnan(loaded.frame.loc[0, "tenure"])
    assert loaded.frame["SeniorCitizen"].dtype == np.int64
    assert loaded.blank_numeric["tenure"] == 1
    assert loaded.blank_numeric["MonthlyCharges"] == 1


def test_an_all_null_text_column_of_a_numeric_feature_is_all_missing() -> None:
    """A window where every SeniorCitizen is NULL arrives as an object column with no
    value at all: every cell is missing (it raised IndexError)."""
    raw = _raw(5)
    raw["SeniorCitizen"] = pd.Series([None] * 5, dtype=object)
    raw["tenure"] = pd.Series([None, " ", None, "NA", None], dtype=object)
    loaded = normalize_frame(raw)
    assert loaded.frame["SeniorCitizen"].isna().all()
    assert loaded.frame["tenure"].isna().all()
    assert (loaded.blank_numeric["SeniorCitizen"], loaded.blank_numeric["tenure"]) == (5, 5)


def test_numbers_as_text_and_typed_columns() -> None:
    raw = _raw(20)
    raw["tenure"] = raw["tenure"].astype(str)
    raw["SeniorCitizen"] = raw["SeniorCitizen"].astype(bool)
    raw["MonthlyCharges"] = raw["MonthlyCharges"].map(lambda v: f" {v} ")
    loaded = normalize_frame(raw)
    expected = generate_customers(20, seed=5)
    pd.testing.assert_frame_equal(loaded.frame, expected, check_exact=True)


def test_customer_id_is_optional() -> None:
    loaded = normalize_frame(_raw().drop(columns=[schema.ID_COLUMN, schema.TARGET]))
    assert tuple(loaded.frame.columns) == schema.FEATURES


def test_empty_csv_with_header(tmp_path: Path) -> None:
    loaded = load_customers(_write(tmp_path / "empty.csv", [HEADER]))
    assert loaded.frame.shape == (0, len(schema.ALL_COLUMNS))
    assert tuple(loaded.frame.columns) == schema.ALL_COLUMNS


# ----------------------------------------------------------------------- target


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["Yes", "No", " yes ", "NO"], [1, 0, 1, 0]),
        ([1, 0, 1, 1], [1, 0, 1, 1]),
        ([1.0, 0.0, 0.0, 1.0], [1, 0, 0, 1]),
        ([True, False, False, True], [1, 0, 0, 1]),
        (["True", "False", "1", "0"], [1, 0, 1, 0]),
    ],
)
def test_target_spellings(values: list[object], expected: list[int]) -> None:
    raw = _raw(4)
    raw[schema.TARGET] = pd.Series(values, dtype=object)
    loaded = normalize_frame(raw, require_target=True)
    assert loaded.frame[schema.TARGET].tolist() == ["Yes" if e else "No" for e in expected]
    np.testing.assert_array_equal(encode_target(loaded.frame[schema.TARGET]), expected)
    encoded = encode_target(pd.Series(values, name=schema.TARGET))
    assert encoded.dtype == np.int64
    np.testing.assert_array_equal(encoded, expected)


def test_bad_target_is_named_with_examples() -> None:
    raw = _raw()
    raw.loc[0, schema.TARGET] = "maybe"
    raw.loc[1, schema.TARGET] = 2
    with pytest.raises(DataSchemaError, match=r"'Churn': 2 value\(s\).*'maybe'.*'2'"):
        normalize_frame(raw)
    with pytest.raises(DataSchemaError, match=r"'label'.*'maybe'"):
        encode_target(pd.Series(["Yes", "maybe"], name="label"))


def test_missing_labels_are_allowed_only_when_not_required() -> None:
    raw = _raw()
    raw.loc[0, schema.TARGET] = " "
    raw.loc[1, schema.TARGET] = None
    loaded = normalize_frame(raw)
    assert loaded.frame[schema.TARGET].isna().sum() == 2
    with pytest.raises(DataSchemaError, match=r"'Churn': 2 row\(s\) have no label"):
        normalize_frame(raw, require_target=True)
    with pytest.raises(DataSchemaError, match="'Churn'"):
        encode_target(loaded.frame[schema.TARGET])


def test_target_required_but_absent() -> None:
    raw = _raw().drop(columns=schema.TARGET)
    assert schema.TARGET not in normalize_frame(raw).frame.columns
    with pytest.raises(DataSchemaError, match=r"missing required column.*Churn"):
        normalize_frame(raw, require_target=True)


# ----------------------------------------------------------------------- errors


def test_missing_columns_are_all_named() -> None:
    raw = _raw().drop(columns=["tenure", "Contract", "TotalCharges"])
    with pytest.raises(DataSchemaError) as info:
        normalize_frame(raw)
    assert "missing required column(s): tenure, Contract, TotalCharges" in str(info.value)


def test_missing_column_hint_for_case() -> None:
    raw = _raw().rename(columns={"tenure": "Tenure"})
    with pytest.raises(DataSchemaError, match="'tenure' \\(found 'Tenure'\\)"):
        normalize_frame(raw)


def test_non_numeric_values_are_named_with_examples() -> None:
    raw = _raw()
    raw.loc[0, "TotalCharges"] = "abc"
    raw.loc[1, "TotalCharges"] = "12,5"
    with pytest.raises(DataSchemaError, match=r"'TotalCharges': 2 value\(s\).*'abc'"):
        normalize_frame(raw)
    raw = _raw()
    raw.loc[0, "MonthlyCharges"] = float("inf")
    with pytest.raises(DataSchemaError, match="'MonthlyCharges'"):
        normalize_frame(raw)


def test_duplicate_columns_after_stripping() -> None:
    raw = _raw()
    raw[" tenure"] = 1
    with pytest.raises(DataSchemaError, match=r"duplicate column.*tenure"):
        normalize_frame(raw)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DataSchemaError, match=r"unsupported file type.*csv.gz"):
        load_customers(tmp_path / "data.xlsx")
    with pytest.raises(DataSchemaError, match="no such file"):
        load_customers(tmp_path / "absent.csv")
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"not parquet")
    with pytest.raises(DataSchemaError, match=r"corrupt.parquet: cannot read"):
        load_customers(corrupt)
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(
        (HEADER + "\n" + REAL_ROWS[0].replace("Female", "F\xe9male")).encode("latin-1")
    )
    with pytest.raises(DataSchemaError, match=r"latin1.csv: cannot read"):
        load_customers(latin1)
    partial = _write(tmp_path / "partial.csv", [HEADER.replace(",tenure", "")])
    with pytest.raises(
        DataSchemaError, match=r"partial.csv: .*missing required column\(s\): tenure"
    ):
        load_customers(partial)


def test_loaded_data_is_immutable(tmp_path: Path) -> None:
    loaded = load_customers(_write(tmp_path / "t.csv", [HEADER, *REAL_ROWS]))
    assert isinstance(loaded, LoadedData)
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.extra_columns = ("x",)  # type: ignore[misc]
    with pytest.raises(TypeError):
        loaded.blank_numeric["TotalCharges"] = 3  # type: ignore[index]
