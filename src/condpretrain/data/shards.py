"""WebDataset tar shards: indexed and read in place, never unpacked; subsets written back.

Large pools live as ``pool-{000000..000127}.tar`` shards, each holding samples as
``KEY.jpg`` (any image extension) plus an optional ``KEY.cls`` label. A shard's member
table (name -> byte offset, size) is read once per process by walking the tar headers,
after which any image is one seek and one read: the same random access that a folder
of files gives, so every command takes shards wherever it takes folders. A member is
addressed as ``/path/to/pool-000003.tar#KEY.jpg``.
"""

from __future__ import annotations

import io
import re
import tarfile
from functools import lru_cache
from pathlib import Path

from condpretrain.atomic import atomic_open
from condpretrain.data.extensions import is_image_file, is_utf8
from condpretrain.errors import CondPretrainError
from condpretrain.log import get_logger

log = get_logger(__name__)

MEMBER_SEPARATOR = "#"
LABEL_EXTENSIONS = (".cls", ".label")
_GROUP = re.compile(r"\{([^{}]*(?:\.\.|,)[^{}]*)\}")
_RANGE = re.compile(r"(\d+)\.\.(\d+)")


def is_shard_spec(path: str) -> bool:
    return path.endswith(".tar")


def expand_braces(pattern: str) -> list[str]:
    """``pool-{000000..000002}.tar`` -> three names (zero padding kept); ``{a,b}`` too.
    The leftmost group varies slowest, as in the shell and in WebDataset."""
    match = _GROUP.search(pattern)
    if not match:
        return [pattern]
    body = match.group(1)
    numbers = _RANGE.fullmatch(body)
    if numbers:
        first, last = numbers.groups()
        width = len(first) if first.startswith("0") else 0
        choices = [str(n).zfill(width) for n in range(int(first), int(last) + 1)]
    else:
        choices = body.split(",")
    head, tail = pattern[:match.start()], pattern[match.end():]
    return [name for choice in choices for name in expand_braces(head + choice + tail)]


def is_member_path(path: str) -> bool:
    shard, sep, _ = path.rpartition(MEMBER_SEPARATOR)
    return bool(sep) and shard.endswith(".tar")


def read_member(path: str) -> bytes:
    """The bytes of ``SHARD.tar#MEMBER``; OSError if either is missing (a skipped image)."""
    shard, _, member = path.rpartition(MEMBER_SEPARATOR)
    table = _member_table(shard)
    if member not in table:
        raise OSError(f"no member {member!r} in {shard}")
    offset, size = table[member]
    with open(shard, "rb") as handle:
        handle.seek(offset)
        data = handle.read(size)
    if len(data) != size:
        raise OSError(f"{shard} is truncated")
    return data


def index_shards(pattern: str, option: str = "--source") -> tuple[list[str], list[str]]:
    """(member paths, labels) of every image sample in the shards ``pattern`` names."""
    paths, labels = [], []
    left_out = 0
    for shard in expand_braces(pattern):
        if not Path(shard).is_file():
            raise CondPretrainError(f"{option}: no such shard: {shard}")
        try:
            samples = _samples(shard)
        except (tarfile.TarError, OSError) as exc:
            raise CondPretrainError(f"{option}: {shard} is not a readable tar shard ({exc})") from None
        for image_member, label in samples:
            if not is_utf8(image_member) or label is None:
                left_out += 1  # written to UTF-8 outputs, such a sample could not be named
                continue
            paths.append(f"{shard}{MEMBER_SEPARATOR}{image_member}")
            labels.append(label)
    if left_out:
        log.warning("%s: left out %d samples whose name or label is not valid UTF-8",
                    pattern, left_out)
    if not paths:
        raise CondPretrainError(f"{option}: no images found in the shards {pattern}")
    return paths, labels


def write_shards(
    paths: list[str], labels: list[str], out_dir: str | Path, per_shard: int = 10_000,
    prefix: str = "subset",
) -> list[Path]:
    """Copy the images (bytes as they are, no re-encoding) into ``prefix-NNNNNN.tar``
    shards of ``per_shard`` samples, in the given order; keys are the positions."""
    out_dir = Path(out_dir)
    written = []
    for start in range(0, len(paths), per_shard):
        shard = out_dir / f"{prefix}-{start // per_shard:06d}.tar"
        with atomic_open(shard, "wb") as handle, tarfile.open(fileobj=handle, mode="w") as tar:
            for i in range(start, min(start + per_shard, len(paths))):
                key = f"{i:09d}"
                _add(tar, f"{key}{_extension(paths[i])}", read_image_bytes(paths[i]))
                if labels[i]:
                    _add(tar, f"{key}.cls", labels[i].encode("utf-8"))
        written.append(shard)
    return written


def read_image_bytes(path: str) -> bytes:
    if is_member_path(path):
        return read_member(path)
    return Path(path).read_bytes()


@lru_cache(maxsize=256)
def _member_table(shard: str) -> dict[str, tuple[int, int]]:
    with tarfile.open(shard, mode="r:") as tar:
        return {m.name: (m.offset_data, m.size) for m in tar if m.isfile()}


def _samples(shard: str) -> list[tuple[str, str | None]]:
    """(image member, label) per sample key, in the shard's order; the label is None
    when its file is not UTF-8 text."""
    images: dict[str, str] = {}
    label_members: dict[str, str] = {}
    for name in _member_table(shard):
        key, ext = _split_key(name)
        if is_image_file(name):
            images.setdefault(key, name)
        elif ext in LABEL_EXTENSIONS:
            label_members[key] = name
    samples = []
    for key, member in images.items():
        label: str | None = ""
        if key in label_members:
            data = read_member(f"{shard}{MEMBER_SEPARATOR}{label_members[key]}")
            try:
                label = data.decode("utf-8").strip()
            except UnicodeDecodeError:
                label = None
        samples.append((member, label))
    return samples


def _split_key(name: str) -> tuple[str, str]:
    """WebDataset's rule: the key ends at the first dot of the file name."""
    folder, _, base = name.rpartition("/")
    stem, dot, rest = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (dot + rest).lower()


def _extension(path: str) -> str:
    name = path.rpartition(MEMBER_SEPARATOR)[2] if is_member_path(path) else path
    return "." + name.rsplit(".", 1)[-1].lower()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
