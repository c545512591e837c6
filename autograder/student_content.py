"""What the feedback page takes from a student's notebook: the structure the grader vouches for, and text.

The autograded notebook is built from the student's kernel run (or their submission): its cells, metadata
and outputs were all written by the student. As they are, nbconvert would render HTML, Markdown, JavaScript
and SVG outputs as markup (a ``<script>``, an imitation of the judge's verdict box), copy raw cells
verbatim, and nbgrader's GenerateFeedback would look up every cell marked as a grade cell in the gradebook
(a forged one stops it). :func:`sanitized` rebuilds the notebook from what is safe:

- cells: code, markdown and raw, each with its source as text; nbgrader metadata only where the release has
  the same grade_id on a cell of the same type, copied from the release (its first cell only): a forged or
  duplicated grade cell becomes an ordinary cell; other cell metadata dropped, ids renumbered; markdown
  attachments kept only as PNG/JPEG images; the notebook's metadata is the release's;
- outputs: streams (stdout or stderr) and errors as text; display data and results keep PNG/JPEG images
  (checked to be base64) and text: the source of HTML, Markdown, LaTeX, SVG, JavaScript, JSON or widget
  outputs is shown as text, with a line saying what it was.

:class:`FeedbackExporter` renders it: nbconvert's HTML exporter with any HTML inside Markdown escaped, links
with harmful protocols (``javascript:``) disarmed and no raw cell passed through. What remains styled on
the page is nbconvert's and nbgrader's markup and the judge's verdict boxes (added after :func:`sanitized`):
a student's imitation of one is now text.
"""
from __future__ import annotations

import copy
import json
import re

import nbformat
from nbconvert.exporters import HTMLExporter
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from jinja2 import pass_context
from traitlets import default

IMAGES = ("image/png", "image/jpeg")
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")


def _text(value) -> str:
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    return value if isinstance(value, str) else ""


def _as_text(mime: str, value) -> str:
    source = _text(value) or (json.dumps(value, indent=1, default=str) if value not in (None, "", []) else "")
    return f"[{mime} output, shown as text]\n{source}"


def _images(data) -> dict:
    """The PNG/JPEG entries of a MIME bundle whose data is base64 text."""
    if not isinstance(data, dict):
        return {}
    kept = {}
    for mime in IMAGES:
        value = _text(data.get(mime))
        if value and _BASE64.fullmatch(value):
            kept[mime] = value
    return kept


def _output(output) -> nbformat.NotebookNode | None:
    """One output rebuilt from its safe parts (None for anything that is not an output)."""
    if not isinstance(output, dict):
        return None
    kind = output.get("output_type")
    if kind == "stream":
        name = "stderr" if output.get("name") == "stderr" else "stdout"
        return nbformat.v4.new_output("stream", name=name, text=_text(output.get("text")))
    if kind == "error":
        trace = output.get("traceback")
        return nbformat.v4.new_output("error", ename=_text(output.get("ename")), evalue=_text(output.get("evalue")),
                                      traceback=[t for t in trace if isinstance(t, str)] if isinstance(trace, list) else [])
    if kind not in ("display_data", "execute_result"):
        return None
    data = output.get("data") if isinstance(output.get("data"), dict) else {}
    kept = _images(data)
    rich = [mime for mime in data if mime not in (*IMAGES, "text/plain")]
    if rich:
        kept["text/plain"] = _as_text(rich[0], data[rich[0]])
    elif "text/plain" in data or not kept:
        kept["text/plain"] = _text(data.get("text/plain"))
    metadata = {}
    for mime in IMAGES:
        size = (output.get("metadata") or {}).get(mime) if isinstance(output.get("metadata"), dict) else None
        if mime in kept and isinstance(size, dict):
            sizes = {k: v for k, v in size.items() if k in ("width", "height") and type(v) is int}
            if sizes:
                metadata[mime] = sizes
    if kind == "execute_result":
        count = output.get("execution_count")
        return nbformat.v4.new_output(kind, data=kept, metadata=metadata,
                                      execution_count=count if type(count) is int else None)
    return nbformat.v4.new_output(kind, data=kept, metadata=metadata)


def _nbgrader_id(cell: dict) -> str | None:
    meta = cell.get("metadata")
    nbgrader = meta.get("nbgrader") if isinstance(meta, dict) else None
    grade_id = nbgrader.get("grade_id") if isinstance(nbgrader, dict) else None
    return grade_id if isinstance(grade_id, str) else None


def sanitized(nb, release_nb) -> nbformat.NotebookNode:
    """``nb`` (the kernel's executed notebook or a submission, any JSON) rebuilt as the module docstring says."""
    released = {}
    for cell in release_nb.cells:
        grade_id = _nbgrader_id(cell)
        if grade_id and grade_id not in released:
            released[grade_id] = cell
    clean = nbformat.v4.new_notebook(metadata=copy.deepcopy(release_nb.metadata))
    vouched = set()
    cells = nb.get("cells") if isinstance(nb, dict) and isinstance(nb.get("cells"), list) else []
    for number, cell in enumerate(c for c in cells if isinstance(c, dict)):
        kind, source = cell.get("cell_type"), _text(cell.get("source"))
        if kind == "code":
            outputs = [o for o in map(_output, cell.get("outputs") or []) if o is not None]
            count = cell.get("execution_count")
            new = nbformat.v4.new_code_cell(source, outputs=outputs, execution_count=count if type(count) is int else None)
        elif kind == "markdown":
            new = nbformat.v4.new_markdown_cell(source)
            attachments = cell.get("attachments")
            images = {name: _images(bundle) for name, bundle in attachments.items()} if isinstance(attachments, dict) else {}
            if any(images.values()):
                new.attachments = {name: bundle for name, bundle in images.items() if bundle}
        else:  # raw (or unknown): never rendered (FeedbackExporter passes no raw cell through)
            new = nbformat.v4.new_raw_cell(source)
        new["id"] = f"cell-{number}"
        grade_id = _nbgrader_id(cell)
        original = released.get(grade_id)
        if original is not None and grade_id not in vouched and original.cell_type == new.cell_type:
            new.metadata["nbgrader"] = copy.deepcopy(original.metadata["nbgrader"])
            vouched.add(grade_id)
        clean.cells.append(new)
    return clean


class FeedbackExporter(HTMLExporter):
    """nbconvert's HTML exporter for student content: Markdown's inline HTML escaped, ``javascript:`` and other
    harmful links disarmed, raw cells left out."""

    @default("raw_mimetypes")
    def _no_raw_cells(self):
        return []

    @pass_context  # as nbconvert's own: the filter needs the cell (its attachments)
    def markdown2html(self, context, source):
        cell = context.get("cell", {})
        renderer = IPythonRenderer(
            escape=True, allow_harmful_protocols=False, attachments=cell.get("attachments", {}),
            embed_images=self.embed_images, path=context.get("resources", {}).get("metadata", {}).get("path", ""),
            anchor_link_text=self.anchor_link_text, exclude_anchor_links=self.exclude_anchor_links,
            **self.lexer_options,
        )
        return MarkdownWithMath(renderer=renderer).render(source)
