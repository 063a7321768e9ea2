"""The restricted unpickler refuses every pickle that names a callable other than plain data, at
the top level or nested anywhere, and the payload never runs (its marker file never appears)."""

import builtins
import errno
import importlib
import os
import pickle
import subprocess
import time

import numpy as np
import pytest

from builders import shared_lists
from maln.data import safe_pickle
from maln.errors import DataError, UnsafePickleError


def payloads(marker):
    cmd = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w').write('pwned')"

    class OsSystem:
        def __reduce__(self):
            return (os.system, (cmd,))

    class Subprocess:
        def __reduce__(self):
            return (subprocess.call, (["touch", str(marker)],))

    class Eval:
        def __reduce__(self):
            return (builtins.eval, (code,))

    class Exec:
        def __reduce__(self):
            return (builtins.exec, (code,))

    class GetAttr:
        def __reduce__(self):
            return (builtins.getattr, ("a string", "upper"))

    class ImportLib:
        def __reduce__(self):
            return (importlib.import_module, ("os",))

    return {"os.system": OsSystem, "subprocess": Subprocess, "eval": Eval, "exec": Exec,
            "getattr": GetAttr, "importlib": ImportLib}


def nestings(evil):
    return {
        "top": evil,
        "list": [1, [2, [3, evil]]],
        "dict": {"a": {"b": {"c": evil}}},
        "tuple-in-dict": ({}, {"x": (1, 2, [evil])}),
        "object-array": {"feat": np.array([np.zeros(2), evil], dtype=object)},
    }


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("kind", ["os.system", "subprocess", "eval", "exec", "getattr", "importlib"])
@pytest.mark.parametrize("where", ["top", "list", "dict", "tuple-in-dict", "object-array"])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, kind, where, protocol):
    marker = tmp_path / "pwned"
    evil = payloads(marker)[kind]()
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(nestings(evil)[where], protocol=protocol))
    with pytest.raises(UnsafePickleError, match="refused to load"):
        safe_pickle.load(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_plain_data_loads_at_every_protocol(tmp_path, protocol):
    obj = ({"a": np.arange(6, dtype=np.float32).reshape(2, 3)}, [np.int64(3), np.float32(1.5)], {1, 2},
           ["M", "F"], np.array([[1, 0], "x"], dtype=object))
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    got = safe_pickle.load(path)
    np.testing.assert_array_equal(got[0]["a"], obj[0]["a"])
    assert got[1] == [3, 1.5] and got[2] == {1, 2} and got[3] == ["M", "F"]


def test_codecs_other_than_latin1_are_refused(tmp_path):
    import codecs

    class Zip:
        def __reduce__(self):
            return (codecs.encode, (b"x" * 10, "zlib_codec"))

    path = tmp_path / "z.pkl"
    path.write_bytes(pickle.dumps(Zip(), protocol=2))
    with pytest.raises(UnsafePickleError):
        safe_pickle.load(path)


@pytest.mark.parametrize("content, message", [(b"", "ends early"), (b"this is not a pickle", "not a readable pickle")])
def test_broken_files_give_a_data_error(tmp_path, content, message):
    path = tmp_path / "bad.pkl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        safe_pickle.load(path)


def test_truncated_pickle_gives_a_data_error(tmp_path):
    data = pickle.dumps({"x": np.zeros((100, 10))}, protocol=4)
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="ends early|not a readable"):
        safe_pickle.load(path)


# -- what a file may expand to ---------------------------------------------------------------------

def test_a_shared_object_counts_every_time_it_is_reached():
    # [0.5, 0.5] is 3 values; each level adds a list holding the one below twice: 1 + 2 * below
    assert safe_pickle.check_expansion(shared_lists(3), safe_pickle.Budget(0), "x") == 31


def test_a_small_pickle_that_denotes_2_to_the_41_numbers_is_refused_at_once(tmp_path):
    path = tmp_path / "bomb.pkl"
    path.write_bytes(pickle.dumps({"d01": shared_lists(40)}, protocol=2))
    start = time.perf_counter()
    with pytest.raises(UnsafePickleError, match=r"stands for more than 1,048,576 values .* of \d+ bytes"):
        safe_pickle.load(path)
    assert time.perf_counter() - start < 1


def test_a_feature_file_stays_within_one_value_per_byte():
    """The budget's premise, on rows stored as lists (the tightest case: 9 bytes a number) and as
    float32 arrays, with the shared strings (speaker 'M', a repeated sentence) real files have."""
    rows = {f"d{i}": [[float(j) for j in range(100)] for _ in range(5)] for i in range(50)}
    arrays = {f"d{i}": [np.zeros(100, np.float32) for _ in range(5)] for i in range(50)}
    for obj in (rows, arrays):
        obj = (obj, {k: ["M"] * 5 for k in obj}, {k: ["a sentence"] * 5 for k in obj})
        for protocol in (2, 4):
            size = len(pickle.dumps(obj, protocol=protocol))
            assert safe_pickle.check_expansion(obj, safe_pickle.Budget(size), "x") <= size


def test_the_memory_ceiling_holds_while_reading_and_is_lifted_after(tmp_path):
    resource = pytest.importorskip("resource")
    limit = resource.getrlimit(resource.RLIMIT_AS)
    table = tmp_path / "table.pkl"  # asks for a memo table of 2^26 entries, 1 GB
    table.write_bytes(b"\x80\x02N" + b"r" + (1 << 26).to_bytes(4, "little") + b".")
    with pytest.raises(UnsafePickleError, match="MiB of memory"):
        safe_pickle.load(table)
    assert resource.getrlimit(resource.RLIMIT_AS) == limit
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"d": [1.0] * 10}))
    assert safe_pickle.load(plain) == {"d": [1.0] * 10}
    assert resource.getrlimit(resource.RLIMIT_AS) == limit


def test_a_fifo_is_refused_without_being_opened(tmp_path):
    fifo = tmp_path / "features.pkl"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=r"is a named pipe \(FIFO\); a regular file is needed"):
        safe_pickle.load(fifo)


def test_a_file_the_os_refuses_to_read_is_named_with_the_reason(tmp_path, monkeypatch):
    """The refusal is injected into our own io layer: as root (CI), file permissions are not enforced."""
    from maln import io

    def refuse(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    path = tmp_path / "features.pkl"
    path.write_bytes(pickle.dumps({"d": [1.0]}))
    monkeypatch.setattr(io, "open_regular", refuse)
    with pytest.raises(DataError, match=r"features\.pkl: permission denied$"):
        safe_pickle.load(path)
