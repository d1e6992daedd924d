"""MkDocs hooks: the CLI, REST and policy-pack references are generated from the code.

A page holds a marker (``<!-- generated: cli -->``, ``rest`` or ``packs``) where
the reference goes; the hook replaces it on every build, so the reference can
never drift from the command line, the OpenAPI document or the pack models.
"""

from __future__ import annotations

import re
from typing import Any

MARKER = re.compile(r"<!-- generated: (cli|rest|packs) -->")


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Replace each marker by its generated reference."""
    return MARKER.sub(lambda m: GENERATORS[m.group(1)](), markdown)


def _cli() -> str:
    import typer

    from governance.cli import app

    root = typer.main.get_command(app)
    out: list[str] = []

    def walk(command: Any, path: list[str]) -> None:
        if hasattr(command, "commands"):  # a group (typer's own click, or click's)
            for name in sorted(command.commands):
                walk(command.commands[name], [*path, name])
            return
        arguments = [p for p in command.params if p.param_type_name == "argument"]
        usage = " ".join(["recgov", *path, *(_usage(p) for p in arguments)])
        out.append(f"### `{' '.join(['recgov', *path])}`\n")
        out.append((command.help or "").strip().split("\n\n")[0] + "\n")
        out.append(f"```\n{usage} [OPTIONS]\n```\n")
        rows = [_option_row(p) for p in command.params if p.param_type_name == "option" and not p.hidden]
        if rows:
            out.append("| option | meaning |\n|---|---|")
            out.extend(rows)
            out.append("")

    walk(root, [])
    return "\n".join(out)


def _usage(argument: Any) -> str:
    name = (argument.metavar or argument.name).upper()
    return name if argument.required else f"[{name}]"


def _option_row(option: Any) -> str:
    names = ", ".join(f"`{n}`" for n in [*option.opts, *option.secondary_opts])
    text = (option.help or "").replace("|", "\\|").replace("\n", " ")
    if option.default not in (None, False, (), "") and not callable(option.default) and option.show_default is not False:
        text += f" (default: `{option.default}`)"
    return f"| {names} | {text} |"


def _rest() -> str:
    from governance.api.app import create_app

    spec = create_app().openapi()
    out: list[str] = []
    for path, operations in sorted(spec["paths"].items()):
        for method, operation in operations.items():
            scopes = [scope for requirement in operation.get("security", []) for values in requirement.values() for scope in values]
            out.append(f"### `{method.upper()} {path}`\n")
            out.append(f"{operation.get('summary', '')}. Scope: {', '.join(f'`{s}`' for s in scopes) or 'none (public)'}.\n")
            description = (operation.get("description") or "").strip()
            if description:
                out.append(description + "\n")
            responses = ", ".join(f"`{code}` {r.get('description', '')}" for code, r in operation.get("responses", {}).items())
            out.append(f"Responses: {responses}.\n")
    return "\n".join(out)


def _packs() -> str:
    from governance.policy import pack_json_schema

    schema = pack_json_schema()
    defs = schema["$defs"]
    out = [schema.get("description", ""), ""]
    out.append("| section | what it holds |\n|---|---|")
    for name, prop in schema["properties"].items():
        ref = prop.get("$ref", "").rsplit("/", 1)[-1]
        out.append(f"| `{name}` | {_one_line(defs.get(ref, prop).get('description', ''))} |")
    out.append("")
    for name in sorted(defs):
        definition = defs[name]
        if "properties" not in definition:
            continue
        title = definition.get("title", name)
        out.append(f"### {title}\n")
        if definition.get("description"):
            out.append(definition["description"].strip() + "\n")
        out.append("| field | type | default | meaning |\n|---|---|---|---|")
        required = set(definition.get("required", []))
        for field, spec in definition["properties"].items():
            default = "required" if field in required else f"`{spec['default']}`" if "default" in spec else ""
            out.append(f"| `{field}` | {_type(spec)} | {default} | {_one_line(spec.get('description', ''))} |")
        out.append("")
    return "\n".join(out)


def _type(spec: dict[str, Any]) -> str:
    if "$ref" in spec:
        return spec["$ref"].rsplit("/", 1)[-1].split("__")[-1]
    if "const" in spec:
        return f"`{spec['const']}`"
    if "enum" in spec:
        return " \\| ".join(f"`{v}`" for v in spec["enum"])
    if "anyOf" in spec:
        return " or ".join(_type(s) for s in spec["anyOf"])
    if spec.get("type") == "array":
        return f"list of {_type(spec.get('items', {}))}"
    return str(spec.get("type", "any"))


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


GENERATORS = {"cli": _cli, "rest": _rest, "packs": _packs}
