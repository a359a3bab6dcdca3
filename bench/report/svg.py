"""Matplotlib's SVG, made fit to sit inline in the report's page.

The plots carry text from records (cell ids, reasons, worker and model names). Matplotlib escapes it when
it writes the SVG; this module does not rely on that alone: it parses the file and writes it again from an
allow-list, so what reaches the page is drawing elements and escaped text, whatever a label held:
- only the elements matplotlib draws with (no script, foreignObject, style or metadata);
- no event-handler attribute (`on*`), no link but to an id in the same figure or an embedded raster image;
- every id and reference prefixed with the plot's name, so that several figures on one page never share one;
- no namespace declarations, DOCTYPE or XML declaration (the HTML parser puts <svg> in its namespace).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html import escape
from pathlib import Path

ELEMENTS = frozenset({"svg", "g", "defs", "path", "rect", "circle", "ellipse", "line", "polyline", "polygon", "text",
                      "tspan", "use", "image", "clipPath", "pattern", "linearGradient", "radialGradient", "stop",
                      "mask", "marker", "symbol", "title"})
EMBEDDED_IMAGE = ("data:image/png;base64,", "data:image/jpeg;base64,")
_ATTRIBUTE = re.compile(r"^[A-Za-z][-A-Za-z0-9_.:]*$")
_LOCAL_URL = re.compile(r"url\(#([-\w.]+)\)")
_ANY_URL = re.compile(r"url\(", re.IGNORECASE)


def inline(path: Path, prefix: str) -> str:
    """The SVG at `path` as markup to place in an HTML page, its ids prefixed with `prefix`."""
    if not re.fullmatch(r"[A-Za-z][\w-]*", prefix):
        raise ValueError(f"an id prefix must be a plain name (got {prefix!r})")
    root = ET.parse(path).getroot()
    out: list[str] = []
    _write(root, prefix, out)
    return "".join(out)


def _local(name: str) -> str:
    """A tag or attribute name without its namespace ({http://www.w3.org/1999/xlink}href → href)."""
    return name.rsplit("}", 1)[-1]


def _write(element: ET.Element, prefix: str, out: list[str]) -> None:
    tag = _local(element.tag) if isinstance(element.tag, str) else ""  # comments and PIs have a function as tag
    if tag not in ELEMENTS:
        return
    attributes = "".join(f' {name}="{escape(value, quote=True)}"'
                         for name, value in (_attribute(k, v, prefix) for k, v in element.attrib.items()) if name)
    out.append(f"<{tag}{attributes}>")
    out.append(escape(element.text or "", quote=False))
    for child in element:
        _write(child, prefix, out)
        out.append(escape(child.tail or "", quote=False))
    out.append(f"</{tag}>")


def _attribute(name: str, value: str, prefix: str) -> tuple[str | None, str]:
    """The attribute as it may appear on the page, or (None, _) to leave it out."""
    name = _local(name)
    if not _ATTRIBUTE.match(name) or name.lower().startswith("on"):
        return None, value
    if name == "id":
        return name, f"{prefix}-{value}"
    if name == "href":
        if value.startswith("#"):
            return name, f"#{prefix}-{value[1:]}"
        return (name, value) if value.startswith(EMBEDDED_IMAGE) else (None, value)
    value = _LOCAL_URL.sub(lambda m: f"url(#{prefix}-{m[1]})", value)
    if len(_ANY_URL.findall(value)) != value.count(f"url(#{prefix}-"):  # a url() to anything but this figure
        return None, value
    return name, value
