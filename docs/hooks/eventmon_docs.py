"""mkdocs hooks: the configuration reference is generated from the code at build time.

``configuration.md`` holds markers like ``<!-- eventmon:signature eventmon.MetricsCollector -->``;
each is replaced by a table of the object's keyword arguments — name, default, and
the description from its docstring's ``Args:`` section — read by introspection, so
the page cannot drift from the code. ``<!-- eventmon:include FILE -->`` is replaced by
that file of the repository (the changelog page shows ``CHANGELOG.md``). Pages listed in
``nav`` that do not exist (yet) are dropped instead of breaking the strict build.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

_MARKER = re.compile(r"<!--\s*eventmon:signature\s+([\w.]+)\s*-->")
# Sphinx roles in docstrings (":class:`X`") come out of mkdocstrings as ":class:<code>X</code>".
_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):<code>(~?)([\w.]+)</code>")
_INCLUDE = re.compile(r"<!--\s*eventmon:include\s+([\w./-]+)\s*-->")


def _resolve(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return importlib.import_module(dotted)


def _args_section(doc: str) -> dict[str, str]:
    """``name: text`` entries of a Google-style ``Args:`` section (continuations joined)."""
    out: dict[str, str] = {}
    lines = inspect.cleandoc(doc).splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Args:")
    except StopIteration:
        return out
    current: list[str] = []
    for line in lines[start + 1 :]:
        if line and not line.startswith(" "):
            break  # the next section
        m = re.match(r"^ {4}([\w, ]+?):\s*(.*)$", line)
        if m and not line.startswith("     "):
            current = [m.group(2)]
            for name in m.group(1).split(","):
                out[name.strip()] = ""  # filled below
            names = [n.strip() for n in m.group(1).split(",")]
            for n in names:
                out[n] = " ".join(current)
            last = names
        elif line.strip() and out:
            current.append(line.strip())
            for n in last:
                out[n] = " ".join(current)
    return out


def _fmt_default(value: Any) -> str:
    if value is inspect.Parameter.empty:
        return "*required*"
    if callable(value) and hasattr(value, "__qualname__"):
        return f"`{getattr(value, '__module__', '')}.{value.__qualname__}`"
    text = repr(value)
    return f"`{text}`" if len(text) < 60 else f"`{text[:57]}...`"


def signature_table(dotted: str) -> str:
    obj = _resolve(dotted)
    target = obj.__init__ if inspect.isclass(obj) else obj
    sig = inspect.signature(target)
    docs = _args_section(obj.__doc__ or "")
    summary = inspect.cleandoc(obj.__doc__ or "").split("\n\n", 1)[0]
    rows = ["| argument | default | meaning |", "|---|---|---|"]
    for name, p in sig.parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        text = docs.get(name) or docs.get(name.rstrip("_")) or ""
        text = text.replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{name}` | {_fmt_default(p.default)} | {text} |")
    return f"**`{dotted}`** — {summary}\n\n" + "\n".join(rows) + "\n"


def on_config(config: Any) -> Any:
    docs_dir = Path(config["docs_dir"])

    def keep(item: Any) -> Any:
        if isinstance(item, dict):
            out = {}
            for title, value in item.items():
                kept = keep(value)
                if kept:
                    out[title] = kept
            return out or None
        if isinstance(item, list):
            return [k for k in (keep(i) for i in item) if k]
        if isinstance(item, str) and not item.startswith(("http://", "https://")):
            return item if (docs_dir / item).exists() else None
        return item

    if config.get("nav"):
        config["nav"] = keep(config["nav"])
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    root = Path(config["config_file_path"]).parent
    markdown = _INCLUDE.sub(lambda m: (root / m.group(1)).read_text(), markdown)
    return _MARKER.sub(lambda m: signature_table(m.group(1)), markdown)


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """Drop the Sphinx role prefixes from the API reference (``~a.b.C`` shows ``C``)."""

    def code(m: re.Match[str]) -> str:
        name = m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2)
        return f"<code>{name}</code>"

    return _ROLE.sub(code, html)
