"""The typed fields of a raw feature file, each checked where it is read: tuples of the layout's
arity, mappings and id lists, real-valued matrices and vectors, speaker codes. Every problem is a
DataError naming the file, the dialogue and the field (maln/data/readers.py uses these)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from maln.errors import DataError

def tuple_of(obj, arity: int, names: str, source: str, layout: str) -> tuple:
    if not isinstance(obj, (tuple, list)) or len(obj) != arity:
        found = f"a {type(obj).__name__} of {len(obj)} items" if isinstance(obj, (tuple, list)) else f"a {type(obj).__name__}"
        raise DataError(source, f"layout {layout} expects a {arity}-tuple ({names}); found {found}")
    return tuple(obj)


def mapping_of(obj, what: str, source: str) -> dict:
    if not isinstance(obj, dict):
        raise DataError(source, f"{what} should map dialogue ids to values; found a {type(obj).__name__}")
    return obj


def id_list(obj, what: str, source: str) -> list[str]:
    if isinstance(obj, dict):
        obj = list(obj)
    if not isinstance(obj, (list, tuple, set, frozenset, np.ndarray)):
        raise DataError(source, f"{what} should be a list of dialogue ids; found a {type(obj).__name__}")
    ids = [str(x) for x in obj]
    dupes = [k for k, n in Counter(ids).items() if n > 1]
    if dupes:
        raise DataError(source, f"{what} lists a dialogue more than once", dialogue=dupes[0])
    return ids


REAL = "biuf"  # numpy dtype kinds of real numbers: bool, signed and unsigned integers, floats


def real_array(value, source: str, dialogue: str, what: str, expected: str = "real numbers") -> np.ndarray:
    """`value` as an array of real numbers, its dtype kept; the one check of the element type of
    features, labels and one-hot speakers. Any other dtype is refused by name: converting complex
    numbers drops their imaginary part, converting strings parses text, both silently."""
    try:
        arr = np.asarray(value)
        if arr.dtype.hasobject:  # a list of arrays of mixed types, or an object array: look inside once
            arr = np.asarray(arr.tolist())
    except (TypeError, ValueError):
        raise DataError(source, f"{what} are not a rectangular array of numbers", dialogue) from None
    if arr.size and arr.dtype.kind not in REAL:
        raise DataError(source, f"{what} are not {expected} (dtype {arr.dtype}; only bool, integer and float "
                                "arrays are read, nothing is converted from other types)", dialogue)
    return arr


def float_matrix(value, source: str, dialogue: str, modality: str) -> np.ndarray:
    arr = real_array(value, source, dialogue, f"{modality} features")
    if arr.ndim != 2:
        raise DataError(source, f"{modality} features have shape {arr.shape}; expected [utterances x dim]", dialogue)
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 4:
        # the store keeps float32: a larger finite value would silently become inf there
        beyond = np.isfinite(arr) & (np.abs(arr) > np.finfo(np.float32).max)
    else:
        beyond = np.zeros(0, bool)
    if beyond.any():
        i, j = map(int, np.argwhere(beyond)[0])
        raise DataError(source, f"{modality} features exceed the float32 range ({arr[i, j]:g} at utterance {i}, "
                                f"dimension {j})", dialogue)
    return arr.astype(np.float32, copy=False)


def int_vector(value, source: str, dialogue: str, what: str) -> np.ndarray:
    arr = real_array(value, source, dialogue, what, "a list of integers")
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        if arr.ndim == 1 and arr.size and np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
            return arr.astype(np.int64)
        raise DataError(source, f"{what} are not a list of integers (dtype {arr.dtype}, shape {arr.shape})", dialogue)
    return arr.astype(np.int64)


class Speakers:
    """Turns a file's speaker notation into party indices: symbols ('M'/'F') or one-hot vectors."""

    def __init__(self, preferred=()):
        self.symbols = list(preferred)

    def __call__(self, value, source: str, dialogue: str) -> np.ndarray:
        if isinstance(value, np.ndarray) and value.ndim == 2 or (
            isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple, np.ndarray))
        ):
            onehot = real_array(value, source, dialogue, "speakers")
            if onehot.ndim != 2 or not np.all((onehot == 0) | (onehot == 1)) or not np.all(onehot.sum(1) == 1):
                raise DataError(source, "speakers should be one-hot vectors (exactly one 1 each)", dialogue)
            while len(self.symbols) < onehot.shape[1]:
                self.symbols.append(str(len(self.symbols)))
            return onehot.argmax(1).astype(np.int64)
        if not isinstance(value, (list, tuple, np.ndarray)):
            raise DataError(source, f"speakers should be a list; found a {type(value).__name__}", dialogue)
        out = []
        for s in value:
            if not isinstance(s, (str, bytes, int, np.integer)) or isinstance(s, bool):
                raise DataError(source, f"speakers should be names (strings), party numbers (integers) or one-hot "
                                        f"vectors; found a {type(s).__name__} ({s!r:.40})", dialogue)
            s = str(s)
            if s not in self.symbols:
                self.symbols.append(s)
            out.append(self.symbols.index(s))
        return np.asarray(out, dtype=np.int64)


def by_id(mapping: dict, what: str, source: str) -> dict:
    out = {}
    for k, v in mapping.items():
        if str(k) in out:
            raise DataError(source, f"{what}: two dialogue ids read the same ({k!r}); ids must be unique", str(k))
        out[str(k)] = v
    return out
