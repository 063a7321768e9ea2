"""The restricted unpickler refuses every pickle that names a callable other than plain data, at
the top level or nested anywhere, and the payload never runs (its marker file never appears)."""

import builtins
import importlib
import os
import pickle
import subprocess

import numpy as np
import pytest

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
