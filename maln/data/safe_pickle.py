"""A restricted, bounded unpickler: the feature files are pickles from the internet, and a pickle can
name any callable (os.system, eval, ...) for the loader to call. This one resolves only plain
containers, numbers, strings and numpy arrays, scalars and dtypes; any other name is refused when
the pickle asks for it, before anything it built could be called. Objects nested anywhere (inside
lists, dicts, numpy object arrays) go through the same check, because numpy hands their items back
to this unpickler.

A pickle can also be small and stand for a great deal: it stores a shared object once and refers
to it again in two bytes, so a list holding the same list twice, forty levels deep, is a few
hundred bytes that denote 2^41 numbers, which the readers would build when they convert to arrays.
And the unpickler itself sizes tables and arrays by numbers the file gives. So what a file may
expand to is bounded by its size, in one budget (`Budget`), checked before any reader converts
anything."""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import contextlib
import itertools
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maln import io
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


@dataclass(frozen=True)
class Budget:
    """What a pickle of `size` bytes may expand to. A feature file spends at least one byte on each
    value it holds (a number in a list costs 2 to 9 bytes, an array element 1 to 8, a reference to
    a shared object 2 to 5), so it may denote at most one value per byte; and the unpickler may use
    some times the file's size in memory (Python objects are larger than their pickled form: 4.3
    times for lists of floats, measured). The floors let the smallest files share a little."""

    size: int
    VALUES_FLOOR = 1 << 20
    MEMORY_PER_BYTE = 16
    MEMORY_FLOOR = 256 << 20
    # numpy arrays have at most 64 dimensions; feature files nest a handful of containers
    MAX_DEPTH = 64

    @property
    def values(self) -> int:
        return max(self.size, self.VALUES_FLOOR)

    @property
    def memory(self) -> int:
        return self.MEMORY_PER_BYTE * self.size + self.MEMORY_FLOOR


@contextlib.contextmanager
def _memory_ceiling(extra: int):
    """Let this process map at most `extra` more bytes until the block ends (Linux: the address
    space limit, process-wide for the length of one load), so that a table or array the pickle
    sizes beyond reason (a memo index of 2^32, `bytes(10**10)`) fails at once with a MemoryError
    instead of taking the machine's memory. Where the limit cannot be read or set, nothing is
    limited; the count of values after loading still applies."""
    try:
        import resource

        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        ceiling = mapped + extra if hard == resource.RLIM_INFINITY else min(mapped + extra, hard)
        if soft != resource.RLIM_INFINITY and soft <= ceiling:
            ceiling = None  # already as tight
        else:
            resource.setrlimit(resource.RLIMIT_AS, (ceiling, hard))
    except (ImportError, OSError, ValueError):
        ceiling = None
    try:
        yield
    finally:
        if ceiling is not None:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


_ONE_VALUE = (int, float, complex, bool, str, type(None), np.generic, np.dtype)


def _leaf(x) -> int | None:
    """The number of values a non-container stands for; None for a container."""
    if isinstance(x, _ONE_VALUE):
        return 1
    if isinstance(x, (bytes, bytearray)):
        return 1 + len(x)  # str() of bytes, as the readers do with ids, copies them
    if isinstance(x, np.ndarray) and not x.dtype.hasobject:
        return 1 + x.size
    return None


def _flat(x) -> int | None:
    """The count for a list or tuple of plain values, in one pass at C speed (the common case:
    a row of numbers); None when it holds anything else."""
    if isinstance(x, (list, tuple)) and all(issubclass(t, _ONE_VALUE) for t in set(map(type, x))):
        return 1 + len(x)
    return None


def _items(x):
    if isinstance(x, dict):
        return itertools.chain.from_iterable(x.items())
    if isinstance(x, np.ndarray):  # an object array
        return x.ravel()
    if isinstance(x, (list, tuple, set, frozenset)):
        return x
    return ()


def check_expansion(root, budget: Budget, source: str) -> int:
    """The number of values `root` denotes, each shared object counted every time it is reached;
    UnsafePickleError as soon as it exceeds the budget, for a container that holds itself, or for
    nesting deeper than the budget allows. Each object is walked once (its count is remembered),
    so this costs the size of the file, not of what it denotes."""
    counted: dict[int, int] = {}
    stack: list = []  # [container, iterator over its items, count so far]
    on_path: set[int] = set()

    def refuse(problem):
        return UnsafePickleError(source, f"refused to load: {problem}; nothing was converted")

    def enter(x) -> int | None:
        """x's count if known without walking it; otherwise push it and return None."""
        n = _leaf(x)
        if n is None:
            n = counted.get(id(x))
        if n is None:
            if id(x) in on_path:
                raise refuse("a container holds itself (a reference cycle); feature data is a tree")
            n = _flat(x)
        if n is not None:
            return n
        if len(stack) >= budget.MAX_DEPTH:
            raise refuse(f"containers nest more than {budget.MAX_DEPTH} levels deep")
        stack.append([x, iter(_items(x)), 1])
        on_path.add(id(x))
        return None

    def within_budget(n: int) -> int:
        if n > budget.values:
            raise refuse(f"it stands for more than {budget.values:,} values (containers that share items "
                         f"count them at every reference), more than a feature file of {budget.size:,} bytes holds")
        return n

    def add(frame, n):
        frame[2] = within_budget(frame[2] + n)

    total = enter(root)
    if total is not None:
        return within_budget(total)
    while stack:
        frame = stack[-1]
        for item in frame[1]:
            n = enter(item)
            if n is None:
                break
            add(frame, n)
        else:
            stack.pop()
            on_path.discard(id(frame[0]))
            counted[id(frame[0])] = frame[2]
            if not stack:
                return frame[2]
            add(stack[-1], frame[2])


def load(path: str | Path, source: str | None = None):
    """Unpickle `path` admitting plain data only, within the Budget of its size; DataError for
    anything broken or refused."""
    path = Path(path)
    source = source or str(path)
    try:
        with io.open_regular(path) as f:
            budget = Budget(os.fstat(f.fileno()).st_size)
            with _memory_ceiling(budget.memory):
                obj = RestrictedUnpickler(f, source).load()
        check_expansion(obj, budget, source)
        return obj
    except UnsafePickleError as e:
        raise UnsafePickleError(source, e.problem) from None
    except MemoryError:
        raise UnsafePickleError(source, f"refused to load: reading it would take more than "
                                        f"{budget.memory >> 20:,} MiB of memory, more than a feature file of "
                                        f"{budget.size:,} bytes needs; nothing was converted") from None
    except FileNotFoundError:
        raise DataError(source, "no such file") from None
    except OSError as e:
        if (problem := io.problem(e)) is None:
            raise
        raise DataError(source, problem) from None
    except EOFError:
        raise DataError(source, "the pickle ends early (truncated file?)") from None
    except pickle.UnpicklingError as e:
        if "truncated" in str(e):
            raise DataError(source, "the pickle ends early (truncated file?)") from None
        raise DataError(source, f"not a readable pickle ({e})") from None
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError) as e:
        raise DataError(source, f"not a readable pickle ({type(e).__name__}: {e})") from None
