"""A restricted unpickler: the feature files are pickles from the internet, and a pickle can name any
callable (os.system, eval, ...) for the loader to call. This one resolves only plain containers,
numbers, strings and numpy arrays, scalars and dtypes; any other name is refused when the pickle
asks for it, before anything it built could be called. Objects nested anywhere (inside lists,
dicts, numpy object arrays) go through the same check, because numpy hands their items back to
this unpickler."""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import io
import pickle
from pathlib import Path

import numpy as np

from maln.errors import DataError, UnsafePickleError


def _latin1_encode(text, encoding="latin1", errors="strict"):
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(str, 'latin1'); only that
    # codec is admitted (other codecs can decompress, which is not plain data).
    if codecs.lookup(encoding).name != "iso8859-1":
        raise UnsafePickleError("<pickle>", f"refused _codecs.encode with codec {encoding!r}")
    return codecs.encode(text, encoding, errors)


_NUMPY_MULTIARRAY = np._core.multiarray  # numpy >= 2
_NUMPY_NUMERIC = np._core.numeric

ALLOWED = {
    **{("builtins", t.__name__): t for t in (list, dict, tuple, set, frozenset, int, float, complex, str, bytes, bytearray, bool)},
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("_codecs", "encode"): _latin1_encode,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # numpy 1.x wrote numpy.core.*, numpy 2.x writes numpy._core.*; both mean the same functions
    **{(mod, "_reconstruct"): _NUMPY_MULTIARRAY._reconstruct for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(mod, "scalar"): _NUMPY_MULTIARRAY.scalar for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(mod, "_frombuffer"): _NUMPY_NUMERIC._frombuffer for mod in ("numpy.core.numeric", "numpy._core.numeric")},
}


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str):
        # latin1: the conv-emotion files were pickled by Python 2 (numpy's documented choice)
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module, name):
        # Python 2 names (__builtin__.set, ...) -> Python 3 names; the maps only rename modules
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                self.source,
                f"refused to load: the pickle asks for {module}.{name}, which is not plain data "
                "(only containers, numbers, strings and numpy arrays are admitted); nothing was executed",
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError(self.source, "refused to load: the pickle uses persistent ids")


def load(path: str | Path, source: str | None = None):
    """Unpickle `path` admitting plain data only; DataError for anything broken or refused."""
    path = Path(path)
    source = source or str(path)
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(io.BufferedReader(f), source).load()
    except UnsafePickleError as e:
        raise UnsafePickleError(source, e.problem) from None
    except FileNotFoundError:
        raise DataError(source, "no such file") from None
    except EOFError:
        raise DataError(source, "the pickle ends early (truncated file?)") from None
    except pickle.UnpicklingError as e:
        if "truncated" in str(e):
            raise DataError(source, "the pickle ends early (truncated file?)") from None
        raise DataError(source, f"not a readable pickle ({e})") from None
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError) as e:
        raise DataError(source, f"not a readable pickle ({type(e).__name__}: {e})") from None
    except MemoryError:
        raise DataError(source, "the pickle asks for more memory than there is") from None
