"""Customer IDs in the Telco export's shape: "7590-VHVEG" (four digits, a dash, five
capital letters).

An ID is a fixed bijection of a row's global index and does not depend on any seed: a
call never repeats an ID, and calls over disjoint index ranges never collide.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: Number of distinct customer IDs (10**4 digit blocks times 26**5 letter blocks).
ID_SPACE = 10**4 * 26**5
_ID_MULT = 7_919_263  # coprime with ID_SPACE = 2**9 * 5**4 * 13**5
_ID_ADD = 4_206_913_370
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(x: npt.NDArray[np.uint64], salt: int) -> npt.NDArray[np.uint64]:
    """A 64-bit integer hash (splitmix64 finaliser), vectorised."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(salt)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (z ^ (z >> np.uint64(31))) & _M64


def customer_ids(start: int, n: int) -> np.ndarray:
    """IDs for global row indices ``start .. start + n - 1`` (a numpy str array).

    A bijection of the index onto ``ID_SPACE``: an affine permutation followed by two
    Feistel-like rounds between the digit block and the letter block, so neighbouring
    indices get unrelated-looking IDs.
    """
    if start < 0 or start + n > ID_SPACE:
        raise ValueError(f"id_offset must be in [0, {ID_SPACE - n}] for n={n}, got {start}")
    digits_n, letters_n = np.uint64(10**4), np.uint64(26**5)
    k = np.arange(start, start + n, dtype=np.uint64)
    x = (k * np.uint64(_ID_MULT) + np.uint64(_ID_ADD)) % np.uint64(ID_SPACE)
    d, le = x % digits_n, x // digits_n
    d = (d + _mix(le, 1) % digits_n) % digits_n
    le = (le + _mix(d, 2) % letters_n) % letters_n
    chars = np.empty((n, 10), dtype=np.uint8)
    for j in range(4):
        chars[:, 3 - j] = ord("0") + (d % np.uint64(10)).astype(np.uint8)
        d = d // np.uint64(10)
    chars[:, 4] = ord("-")
    for j in range(5):
        chars[:, 9 - j] = ord("A") + (le % np.uint64(26)).astype(np.uint8)
        le = le // np.uint64(26)
    return chars.view("S10").ravel().astype("U10")
