"""Reading protobuf messages from their wire format, without TensorFlow or generated classes.

A SavedModel's `saved_model.pb` is read field by field: `fields(buf)` yields each field of one
message, and nested messages are read the same way from the bytes it yields. Unknown fields are
skipped by their length, so the parts of a large graph that a reader does not need are never
decoded. Field numbers come from TensorFlow's .proto files and are named where they are used.
"""
from __future__ import annotations

from typing import Iterator

VARINT, I64, LEN, I32 = 0, 1, 2, 5


class DecodeError(ValueError):
    """The bytes are not a valid protobuf message."""


def varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """The varint at `pos` and the position after it."""
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise DecodeError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(buf: memoryview) -> Iterator[tuple[int, int, int | bytes | memoryview]]:
    """Yield (field number, wire type, value) for one message; LEN values are memoryviews."""
    pos = 0
    while pos < len(buf):
        key, pos = varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value, pos = varint(buf, pos)
        elif wire == LEN:
            length, pos = varint(buf, pos)
            if pos + length > len(buf):
                raise DecodeError("length-delimited field runs past the end")
            value, pos = buf[pos:pos + length], pos + length
        elif wire == I64:
            value, pos = bytes(buf[pos:pos + 8]), pos + 8
        elif wire == I32:
            value, pos = bytes(buf[pos:pos + 4]), pos + 4
        else:
            raise DecodeError(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise DecodeError("field runs past the end")
        yield number, wire, value


def text(value: memoryview) -> str:
    return bytes(value).decode("utf-8", errors="replace")


def int64(value: int) -> int:
    """A varint read as a signed 64-bit integer (two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def map_entry(buf: memoryview) -> tuple[str, memoryview]:
    """A `map<string, Message>` entry: its key and the value's bytes."""
    key, value = "", memoryview(b"")
    for number, _, item in fields(buf):
        if number == 1:
            key = text(item)
        elif number == 2:
            value = item
    return key, value
