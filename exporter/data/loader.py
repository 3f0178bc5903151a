"""Load a customer table in the Telco schema from CSV or Parquet, the way exports come.

:func:`load_customers` reads ``.csv``, ``.csv.gz`` and ``.parquet`` files (chosen by
suffix); :func:`normalize_frame` applies the same checks to a frame already in memory
(e.g. the synthetic generator's output, or rows from the prediction log). Both return
a :class:`LoadedData` whose ``frame`` looks like the export:

* columns: ``customerID`` (optional; kept when present), the 19 features in the
  export's order, then ``Churn`` when present. Any other column is dropped and named
  in ``extra_columns``. Column names are matched after stripping whitespace and a
  UTF-8 byte-order mark.
* SeniorCitizen and tenure are int64; if a value is missing or not a whole number the
  column is float64 instead (NaN is kept rather than guessed, and a nullable integer
  dtype would not go through numpy and scikit-learn unchanged). SeniorCitizen also
  accepts Yes/No and True/False (as 1/0).
* MonthlyCharges and TotalCharges are float64. Blank cells (the real export has " "
  in TotalCharges where tenure is 0) and the usual missing-value spellings (NA, NaN,
  null, None) become NaN and are counted per column in ``blank_numeric``. Anything
  else that is not a finite number is an error naming the column with examples.
* The other categorical features and customerID are strings (pandas' default string
  dtype: ``str`` on pandas 3, ``object`` before) with surrounding whitespace
  stripped; a blank cell becomes NaN. Values outside ``schema.CATEGORIES`` (and
  SeniorCitizen values other than 0/1) are *not* an error here, because drift
  detection has to see them: they are listed per column in ``unknown_categories``
  (most frequent first, a blank/missing value shown as ``""``) with the number of
  affected rows in ``unknown_category_rows``.
* ``Churn`` is canonicalised to "Yes"/"No" from Yes/No (any case), 1/0 or True/False;
  any other value is an error naming the column and showing examples. Missing labels
  are allowed (NaN) unless ``require_target=True``, which also makes the column
  itself required. :func:`encode_target` turns the column into 0/1 integers.

Every problem raises :class:`DataSchemaError` (a ``ValueError``), including an
unsupported suffix and an unreadable, missing or corrupt file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from exporter.domain import schema

SUFFIXES = (".csv", ".csv.gz", ".parquet")
#: Spellings read as a missing value (compared case-insensitively, after stripping).
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})

_STR_DTYPE = pd.Series(["x"]).dtype  # "str" on pandas 3, object on pandas 2
_OBJECT_STRINGS = pd.api.types.is_object_dtype(_STR_DTYPE)
_EXAMPLES = 5


class DataSchemaError(ValueError):
    """The data does not fit the Telco schema, or the file cannot be read."""


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class LoadedData:
    """A validated customer table and what was noticed while loading it."""

    frame: pd.DataFrame
    #: Columns outside the schema, in file order; dropped from ``frame``.
    extra_columns: tuple[str, ...] = ()
    #: Per column, the values outside the schema's value set (most frequent first).
    unknown_categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Per numeric column, how many cells were blank or missing (only columns with any).
    blank_numeric: Mapping[str, int] = field(default_factory=dict)
    #: Per column, how many rows hold one of ``unknown_categories``.
    unknown_category_rows: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("unknown_categories", "blank_numeric", "unknown_category_rows"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))


# ----------------------------------------------------------------------- helpers


def _examples(values) -> str:
    shown = [repr(v) for v in list(values)[:_EXAMPLES]]
    return ", ".join(shown)


def _clean_name(name: object) -> str:
    return str(name).replace("\ufeff", "").strip()


def _distinct(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Codes per row (-1 where missing) into the distinct values as stripped text.

    Strings go through pyarrow (trim, dictionary-encode) without a Python loop; other
    values (numbers, booleans, mixed objects) are factorised and then formatted.
    """
    if pd.api.types.is_string_dtype(series.dtype):
        try:
            arr = pa.array(series, from_pandas=True)
        except (pa.ArrowException, TypeError):
            arr = None
        if arr is not None and (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            if isinstance(arr, pa.ChunkedArray):
                arr = arr.combine_chunks()
            encoded = pc.dictionary_encode(pc.utf8_trim_whitespace(arr))
            codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
            text = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
            return codes.astype(np.int64), text
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    return codes.astype(np.int64), _as_text(np.asarray(uniques, dtype=object))


def _as_text(values: np.ndarray) -> np.ndarray:
    """Distinct raw values as stripped str (object array); 1.0 reads as "1"."""
    if pd.api.types.infer_dtype(values, skipna=False) in ("string", "empty"):
        return pd.Series(values, dtype=object).str.strip().to_numpy(dtype=object)
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        if isinstance(v, bool | np.bool_):
            out[i] = "True" if v else "False"
        elif isinstance(v, float | np.floating) and float(v).is_integer():
            out[i] = str(int(v))
        else:
            out[i] = str(v).strip()
    return out


def _string_series(codes: np.ndarray, dictionary: np.ndarray) -> pd.Series:
    """A string column from codes into ``dictionary``; code -1 is missing."""
    if _OBJECT_STRINGS:
        values = np.asarray(dictionary, dtype=object).take(np.maximum(codes, 0))
        values[codes < 0] = np.nan
        return pd.Series(values, dtype=object)
    codes32 = codes.astype(np.int32)
    indices = pa.array(codes32, mask=codes32 < 0)
    decoded = pa.DictionaryArray.from_arrays(
        indices, pa.array(list(dictionary), pa.large_string())
    ).dictionary_decode()
    return pd.Series(pd.array(decoded, dtype=_STR_DTYPE))


# ----------------------------------------------------------------------- numbers


def _coerce_numeric(series: pd.Series, column: str) -> tuple[pd.Series, int]:
    """float values (NaN for blanks/missing) and the number of blank/missing cells."""
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        values = series.to_numpy(dtype=float, na_value=np.nan)
        bad_mask = np.isinf(values)
        if bad_mask.any():
            raise DataSchemaError(
                f"column {column!r}: {int(bad_mask.sum())} value(s) are not finite numbers, "
                f"e.g. {_examples(pd.unique(values[bad_mask]))}"
            )
        return pd.Series(values), int(np.isnan(values).sum())

    codes, text = _distinct(series)
    lowered = pd.Series(text, dtype=object).str.lower().to_numpy(dtype=object)
    missing = np.isin(lowered, list(MISSING_TOKENS))
    candidates = pd.Series(np.where(missing, np.nan, text), dtype=object)
    parsed = pd.to_numeric(candidates, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    if column == "SeniorCitizen":  # a 0/1 flag: Yes/No and True/False are read too
        flags = _yes_no_codes(text)
        parsed = np.where(np.isnan(flags), parsed, flags)
    bad = ~missing & ~np.isfinite(parsed)
    if bad.any():
        bad_rows = int(np.isin(codes, np.flatnonzero(bad)).sum())
        raise DataSchemaError(
            f"column {column!r}: {bad_rows} value(s) are not numbers, e.g. {_examples(text[bad])}"
        )
    values = np.full(len(codes), np.nan)
    present = codes >= 0  # -1: a null cell (and every cell of an all-null column)
    values[present] = parsed[codes[present]]
    return pd.Series(values), int(np.isnan(values).sum())


def _finish_numeric(values: pd.Series, column: str) -> pd.Series:
    if column in schema.INTEGER_FEATURES:
        arr = values.to_numpy(dtype=float)
        if not np.isnan(arr).any() and np.array_equal(arr, np.round(arr)):
            return pd.Series(arr.astype(np.int64))
    return values.astype(np.float64)


# -------------------------------------------------------------------- categories


def _clean_categorical(series: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Stripped strings (blank → missing), plus codes and the cleaned distinct values."""
    codes, text = _distinct(series)
    blank = text == ""
    if blank.any():
        codes = np.where(np.isin(codes, np.flatnonzero(blank)), -1, codes)
    return _string_series(codes, text), codes, text


def _unknowns(
    codes: np.ndarray, text: np.ndarray, allowed: tuple[str, ...]
) -> tuple[tuple[str, ...], int]:
    """Unknown values (most frequent first, "" for missing) and the rows holding them."""
    counts = np.bincount(codes[codes >= 0], minlength=len(text))
    found: dict[str, int] = {}
    for value, count in zip(text, counts, strict=True):
        if count and value != "" and value not in allowed:
            found[value] = found.get(value, 0) + int(count)
    n_missing = int((codes < 0).sum())
    if n_missing:
        found[""] = n_missing
    ordered = sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple(v for v, _ in ordered), sum(found.values())


# ------------------------------------------------------------------------ target


def _yes_no_codes(text: np.ndarray) -> np.ndarray:
    """1.0 / 0.0 per distinct value in a Yes/No spelling of the domain
    (:data:`exporter.domain.schema.YES_NO_CODES`), NaN for any other value."""
    codes = [schema.yes_no_code(value) for value in text]
    return np.array([np.nan if c is None else c for c in codes], dtype=float)


def _target_codes(series: pd.Series, column: str, *, allow_missing: bool) -> np.ndarray:
    """1.0 / 0.0 per row, NaN where missing (an error unless ``allow_missing``)."""
    codes, text = _distinct(series)
    mapped = _yes_no_codes(text)
    bad = [
        i
        for i, value in enumerate(text)
        if np.isnan(mapped[i]) and value.lower() not in MISSING_TOKENS
    ]
    if bad:
        n_bad = int(np.isin(codes, bad).sum())
        raise DataSchemaError(
            f"column {column!r}: {n_bad} value(s) are not Yes/No, 1/0 or True/False, "
            f"e.g. {_examples(text[bad])}"
        )
    values = np.where(codes >= 0, mapped.take(np.maximum(codes, 0)), np.nan)
    if not allow_missing:
        n_missing = int(np.isnan(values).sum())
        if n_missing:
            raise DataSchemaError(f"column {column!r}: {n_missing} row(s) have no label")
    return values


def encode_target(series: pd.Series) -> np.ndarray:
    """The target as a 0/1 int64 array (the domain's label codes,
    :func:`exporter.domain.schema.label_code`); an error names the column and bad values."""
    column = schema.TARGET if series.name is None else str(series.name)
    return _target_codes(series, column, allow_missing=False).astype(np.int64)


# ------------------------------------------------------------------------ public


def _columns_by_name(raw: pd.DataFrame, *, require_target: bool) -> dict[str, pd.Series]:
    """The frame's columns by cleaned name; an error for duplicated or missing ones."""
    if not isinstance(raw, pd.DataFrame):
        raise DataSchemaError(f"expected a pandas DataFrame, got {type(raw).__name__}")
    names = [_clean_name(c) for c in raw.columns]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DataSchemaError(f"duplicate column(s): {', '.join(duplicated)}")
    required = [*schema.FEATURES, *([schema.TARGET] if require_target else [])]
    missing = [c for c in required if c not in names]
    if missing:
        lower = {n.lower(): n for n in names}
        hints = [f"{m!r} (found {lower[m.lower()]!r})" for m in missing if m.lower() in lower]
        message = f"missing required column(s): {', '.join(missing)}"
        if hints:
            message += f"; names differ only in case: {', '.join(hints)}"
        raise DataSchemaError(message)
    return {name: raw.iloc[:, i] for i, name in enumerate(names)}


def _odd_flags(values: pd.Series) -> tuple[tuple[str, ...], int]:
    """SeniorCitizen values other than 0/1 (most frequent first, "" for missing) and the
    rows holding them."""
    arr = values.to_numpy(dtype=float)
    odd = ~np.isin(arr, (0.0, 1.0))
    if not odd.any():
        return (), 0
    text = np.array(["" if np.isnan(v) else f"{v:g}" for v in arr[odd]], dtype=object)
    found, counts = np.unique(text, return_counts=True)
    order = np.lexsort((found, -counts))
    return tuple(str(v) for v in found[order]), int(odd.sum())


@dataclass
class _Normalized:
    """The columns normalised so far and what was noticed (see `LoadedData`)."""

    columns: dict[str, pd.Series] = field(default_factory=dict)
    unknown: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unknown_rows: dict[str, int] = field(default_factory=dict)
    blanks: dict[str, int] = field(default_factory=dict)

    def add_numeric(self, column: str, series: pd.Series) -> None:
        values, n_blank = _coerce_numeric(series, column)
        self.columns[column] = _finish_numeric(values, column)
        if n_blank:
            self.blanks[column] = n_blank
        if column == "SeniorCitizen":
            self._note_unknown(column, *_odd_flags(values))

    def add_target(self, column: str, series: pd.Series, *, require_target: bool) -> None:
        codes = _target_codes(series, column, allow_missing=not require_target)
        labels = np.where(np.isnan(codes), -1, codes).astype(np.int64)
        self.columns[column] = _string_series(labels, np.array(schema.LABELS, dtype=object))

    def add_categorical(self, column: str, series: pd.Series) -> None:
        cleaned, codes, text = _clean_categorical(series)
        self.columns[column] = cleaned
        if column in schema.CATEGORIES:
            self._note_unknown(column, *_unknowns(codes, text, schema.CATEGORIES[column]))

    def _note_unknown(self, column: str, values: tuple[str, ...], n_rows: int) -> None:
        if values:
            self.unknown[column] = values
            self.unknown_rows[column] = n_rows


def normalize_frame(raw: pd.DataFrame, *, require_target: bool = False) -> LoadedData:
    """Validate and normalise an in-memory customer table (see the module docstring)."""
    by_name = _columns_by_name(raw, require_target=require_target)
    out = _Normalized()
    for column in schema.ALL_COLUMNS:
        if column not in by_name:
            continue
        series = by_name[column].reset_index(drop=True)
        if column in schema.MODEL_NUMERIC_FEATURES:
            out.add_numeric(column, series)
        elif column == schema.TARGET:
            out.add_target(column, series, require_target=require_target)
        else:
            out.add_categorical(column, series)
    ordered = [c for c in schema.ALL_COLUMNS if c in out.columns]
    return LoadedData(
        frame=pd.DataFrame(out.columns, columns=ordered),
        extra_columns=tuple(n for n in by_name if n not in schema.ALL_COLUMNS),
        unknown_categories=out.unknown,
        blank_numeric=out.blanks,
        unknown_category_rows=out.unknown_rows,
    )


def read_table(path: Path) -> pd.DataFrame:
    """A CSV (every cell as text, "" for blanks) or Parquet file as raw columns.

    A CSV row with fewer fields than the header (a file cut off mid-write) is a parse
    error naming the row, never silently padded.
    """
    name = path.name.lower()
    if name.endswith(".parquet"):
        return pd.read_parquet(path)
    if name.endswith((".csv", ".csv.gz")):
        # Every cell as text, blanks kept as "" (coerced per column afterwards); the
        # pyarrow parser is several times faster than the C one here and skips a BOM.
        return pd.read_csv(path, dtype=str, keep_default_na=False, engine="pyarrow")
    raise DataSchemaError(f"{path}: unsupported file type; expected one of {', '.join(SUFFIXES)}")


def load_customers(path: str | Path, *, require_target: bool = False) -> LoadedData:
    """Read a ``.csv``, ``.csv.gz`` or ``.parquet`` customer table and normalise it."""
    path = Path(path)
    if not path.name.lower().endswith(SUFFIXES):
        raise DataSchemaError(
            f"{path}: unsupported file type; expected one of {', '.join(SUFFIXES)}"
        )
    if not path.is_file():
        raise DataSchemaError(f"{path}: no such file")
    try:
        raw = read_table(path)
    except DataSchemaError:
        raise
    except (OSError, ValueError, UnicodeDecodeError, pa.ArrowException) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataSchemaError(f"{path}: cannot read the file: {reason}") from exc
    try:
        return normalize_frame(raw, require_target=require_target)
    except DataSchemaError as exc:
        raise DataSchemaError(f"{path}: {exc}") from exc
