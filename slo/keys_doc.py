"""The key reference, rendered from the schema: `slo keys` and docs/keys.md."""

from __future__ import annotations

import sys

from .schema import KEYS, SECTION_KEYS, format_value


def markdown() -> str:
    out = ["# Keys", "",
           "Every key of the config language, by directive. Generated from `slo/schema.py`",
           "by `slo keys --markdown`; do not edit by hand.", ""]
    for section, names in SECTION_KEYS.items():
        out += [f"## {section}", "", "| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        for name in names:
            k = KEYS[name]
            out.append(f"| `{name}` | {k.type_name} | `{format_value(k.default)}` | {k.range_text()} | {k.doc} |")
        out.append("")
    out += ["## ENV", "", "`ENV NAME=value` sets an environment variable for the run, before torch is imported.",
            "NAME matches `[A-Za-z_][A-Za-z0-9_]*`; values are strings.", ""]
    return "\n".join(out)


def text() -> str:
    out = []
    for section, names in SECTION_KEYS.items():
        out.append(section)
        for name in names:
            k = KEYS[name]
            rule = f"  [{k.range_text()}]" if k.range_text() else ""
            out.append(f"  {name:28} {k.type_name:12} = {format_value(k.default):12} {k.doc}{rule}")
    out.append("ENV\n  NAME=value                   str            set an environment variable for the run")
    return "\n".join(out)


def add_arguments(parser, command) -> None:
    parser.add_argument("--markdown", action="store_true", help="print the reference as Markdown")
    parser.add_argument("--json-schema", action="store_true",
                        help="print a JSON Schema (draft 2020-12) of the TOML form, for editors (taplo)")


def run(ns, rest) -> int:
    if ns.json_schema:
        from .json_schema import dumps

        sys.stdout.write(dumps())
        return 0
    print(markdown() if ns.markdown else text())
    return 0
