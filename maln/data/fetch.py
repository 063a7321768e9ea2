"""Where a dataset's raw files come from, and getting them: a download is streamed into a temporary
file beside its destination, checked against its pinned git blob SHA-1, and only then renamed into
data/raw/. A failure leaves nothing at the destination and says how to place the file by hand."""

from __future__ import annotations

import http.client
import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from maln import io
from maln.config import Params
from maln.data import layouts
from maln.errors import ConfigError, FetchError

RAW_DIR = Path("data") / "raw"
TIMEOUT_S = 60


@dataclass(frozen=True)
class RawFile:
    dataset: str
    role: str  # 'main', or the composite's 'text' / 'audio_visual'
    path: Path  # where the file is (or will be) on disk
    url: str | None = None
    sha1: str | None = None
    key: str = ""  # the params key that defines it, for messages
    synthetic: bool = False  # made by `maln synth`, not downloaded


def _spec_file(params: Params, dataset: str, role: str, spec: dict, key: str) -> RawFile:
    if "url" in spec:
        url = spec["url"]
        scheme = urllib.parse.urlparse(url).scheme
        if scheme not in ("http", "https"):
            raise ConfigError(f"{key}.url: {url!r} is not an http(s) address")
        name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
        if not name:
            raise ConfigError(f"{key}.url: {url!r} names no file")
        return RawFile(dataset, role, params.root / RAW_DIR / name, url, spec["sha1"], key)
    return RawFile(dataset, role, params.resolve(spec["path"], f"{key}.path"), None, spec.get("sha1"), key)


def raw_files(params: Params, dataset: str) -> list[RawFile]:
    """The raw files a registry entry needs, in the order of its layout's roles."""
    entry = params.dataset(dataset)
    layout = layouts.get(entry["layout"])
    key = f"datasets.{dataset}"
    if layout.synthetic:
        files = [RawFile(dataset, "main", params.root / RAW_DIR / f"{dataset}.pkl", key=f"{key}.synthetic", synthetic=True)]
    elif layout.files == ("main",):
        files = [_spec_file(params, dataset, "main", entry, key)]
    else:
        files = [_spec_file(params, dataset, role, entry[role], f"{key}.{role}") for role in layout.files]
    _check_no_collision(params, files)
    return files


def _check_no_collision(params: Params, files: list[RawFile]) -> None:
    """Two registry entries may share a download (same URL), never a destination with other content."""
    for f in files:
        if f.url is None:
            continue
        for other in params.data["datasets"]:
            entry = params.data["datasets"][other]
            specs = [entry] + [entry[r] for r in ("text", "audio_visual") if r in entry]
            for spec in specs:
                if "url" in spec and spec["url"] != f.url and Path(urllib.parse.urlparse(spec["url"]).path).name == f.path.name:
                    raise ConfigError(
                        f"{f.key}.url and datasets.{other}: two different downloads would both land at "
                        f"{RAW_DIR / f.path.name}; rename one (the file name comes from the URL)"
                    )


def manual_instructions(f: RawFile) -> str:
    rel = _rel(f.path)
    if f.url:
        return (
            f"To place the file by hand: download {f.url}\n"
            f"  (for example: curl -L -o {rel} '{f.url}'), put it at {rel},\n"
            f"  then run `maln fetch {f.dataset}` to verify it (git blob SHA-1 {f.sha1})."
        )
    return f"Place the file at {rel} ({f.key}.path in params.yaml), then run `maln fetch {f.dataset}` to check it."


_rel = io.shown


def verify(f: RawFile) -> dict:
    """Hashes of a present raw file, checked against its pin. FetchError if absent or different."""
    if (problem := io.not_regular(f.path)) is not None:
        if os.path.lexists(f.path):
            raise FetchError(f"{f.dataset}: {_rel(f.path)} ({f.key}): {problem}")
        if f.synthetic:
            raise FetchError(f"{_rel(f.path)} does not exist: {f.dataset} is synthetic, make it with `maln synth {f.dataset}`")
        raise FetchError(f"{f.dataset}: {_rel(f.path)} does not exist.\n{manual_instructions(f)}")
    hashes = io.file_hashes(f.path)
    if f.sha1 and hashes["sha1"] != f.sha1:
        raise FetchError(
            f"{f.dataset}: {_rel(f.path)} is not the pinned file: git blob SHA-1 {hashes['sha1']}, "
            f"expected {f.sha1} ({f.key}.sha1).\n{manual_instructions(f)}"
        )
    return hashes


def fetch(params: Params, dataset: str, progress: bool | None = None) -> list[dict]:
    """Make every raw file of `dataset` present and verified; download what a URL pins."""
    records = []
    for f in raw_files(params, dataset):
        if f.synthetic:
            raise FetchError(f"{dataset} is synthetic: nothing to download; make it with `maln synth {dataset}`")
        if f.url and f.path.is_file():
            hashes = io.file_hashes(f.path)
            if hashes["sha1"] == f.sha1:
                print(f"{dataset}: {_rel(f.path)} present and verified (sha1 {f.sha1})", file=sys.stderr)
            else:
                print(f"{dataset}: {_rel(f.path)} has git blob SHA-1 {hashes['sha1']}, not the pinned {f.sha1}; "
                      "removing it and downloading again", file=sys.stderr)
                f.path.unlink()
                hashes = download(f, progress)
        elif f.url:
            hashes = download(f, progress)
        else:
            hashes = verify(f)
            print(f"{dataset}: {_rel(f.path)} present" + (" and verified" if f.sha1 else " (no sha1 pinned)"), file=sys.stderr)
        record = {"role": f.role, "path": _rel(f.path), "url": f.url, **hashes}
        if f.url:
            io.write_json(f.path.with_name(f.path.name + ".hashes.json"), record)
        records.append(record)
    return records


def download(f: RawFile, progress: bool | None = None) -> dict:
    """Stream f.url into a temporary file, verify it, rename it onto f.path. Never leaves a
    partial or unverified file at f.path."""
    from tqdm import tqdm

    def fail(what: str) -> FetchError:
        return FetchError(f"{f.dataset}: {what}\n  URL: {f.url}\n  Nothing was written to {_rel(f.path)}.\n  "
                          f"{manual_instructions(f)}")

    if urllib.parse.urlparse(f.url).scheme not in ("http", "https"):
        raise fail("only http(s) addresses are fetched")
    request = urllib.request.Request(f.url, headers={"User-Agent": "maln-fetch"})
    with io.atomic_path(f.path, suffix=".part") as tmp:
        received = 0
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                show = sys.stderr.isatty() if progress is None else progress
                with open(tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                                  desc=f.path.name, disable=not show) as bar:
                    while chunk := response.read(io.CHUNK):
                        out.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
        except urllib.error.HTTPError as e:
            raise fail(f"the server answered HTTP {e.code} ({e.reason})") from None
        except urllib.error.URLError as e:
            raise fail(f"could not connect ({e.reason}); no network?") from None
        except http.client.IncompleteRead as e:
            raise fail(f"transfer cut short after {received + len(e.partial)} bytes") from None
        except (socket.timeout, TimeoutError):
            raise fail(f"no answer within {TIMEOUT_S} s after {received} bytes") from None
        except (ConnectionError, http.client.HTTPException, OSError) as e:
            raise fail(f"transfer failed after {received} bytes ({type(e).__name__}: {e})") from None
        if total is not None and received != total:
            raise fail(f"transfer cut short: {received} of {total} bytes")
        hashes = io.file_hashes(tmp)
        if hashes["sha1"] != f.sha1:
            raise fail(f"hash mismatch: the download ({received} bytes) has git blob SHA-1 {hashes['sha1']}, "
                       f"the registry pins {f.sha1}")
    print(f"{f.dataset}: fetched {_rel(f.path)} ({hashes['size']} bytes, sha1 {hashes['sha1']}, "
          f"sha256 {hashes['sha256']})", file=sys.stderr)
    return hashes
