"""What a file is, guessed from its first bytes, so an error can name it ("it looks like a PDF document")."""
from __future__ import annotations

SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a zip archive"),
    (b"<!DOCTYPE html", "an HTML page"), (b"<html", "an HTML page"),
    (b"<svg", "an SVG drawing, which must be rasterised first"),
    (b"<?xml", "an XML/SVG document, which must be rasterised first"),
    (b"%!PS", "a PostScript/EPS file"), (b"\x1f\x8b", "a gzip archive (unpack it first)"),
    (b"{", "a JSON file"),
)


def describe_bytes(data: bytes) -> str:
    """A short phrase for what ``data`` (a file's first bytes, 512 are plenty) looks like.

    e.g. "it looks like a PDF document", "it looks like a text file", "its bytes match no known format".
    """
    head = data[:64].lstrip()
    for magic, what in SIGNATURES:
        if head[:len(magic)].lower() == magic.lower():
            return f"it looks like {what}"
    try:
        text = data[:512].decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and all(ch.isprintable() or ch in "\t\r\n" for ch in text):
        return "it looks like a text file"
    return "its bytes match no known format"
