"""A griffe extension for the API reference: Sphinx cross-reference roles in docstrings
(``:class:`~chatcore.Client```, ``:meth:`chat```) become mkdocstrings cross-references, and
attributes without a docstring are left out of the reference.

The docstrings keep their Sphinx form (it is what ``help()`` and IDEs show); this runs only
when mkdocs builds the site (``mkdocs.yml`` lists it under the python handler's
``extensions``). A role's target is resolved the way Python resolves the name, in the scope of
the object whose docstring holds it (griffe's ``Object.resolve``):

- a target in chatcore (``chatcore.*``, ``chatcore_*``) becomes a required cross-reference:
  if the reference does not render it, ``mkdocs build --strict`` fails (tests/test_docs.py);
- a target elsewhere (``asyncio.run``, ``requests.Session``) becomes an optional one: a link
  where some page documents it, plain code otherwise;
- ``~a.b.C`` shows ``C``, ``!name`` is never linked, ``title <target>`` shows the title.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

#: The Python-domain roles Sphinx knows (``:py:class:`` too).
ROLE = re.compile(
    r":(?:py:)?(?P<role>class|meth|func|attr|mod|exc|data|obj|const|type|deco)"
    r":`(?P<body>[^`]+)`"
)
_TITLED = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^<>]+)>$")
#: Distributions whose names must resolve (anything else may stay unlinked).
OURS = re.compile(r"^chatcore(?:_\w+)?(?:\.|$)")


def resolve(obj: griffe.Object | griffe.Alias, target: str) -> str | None:
    """The full path ``target`` names in the scope of ``obj`` (``None``: not resolvable;
    a dotted target whose first part resolves gets the rest appended)."""
    target = target.lstrip(".")
    head, _, rest = target.partition(".")
    scope: griffe.Object | griffe.Alias | None = obj
    while scope is not None:  # an inherited member (griffe's resolve sees declared ones)
        if not scope.is_alias and scope.is_class and head in _members(scope):
            return f"{scope.path}.{target}"
        scope = scope.parent
    try:
        path = obj.resolve(head)
    except (griffe.NameResolutionError, griffe.AliasResolutionError, KeyError):
        if OURS.match(target):
            return target
        return None
    return f"{path}.{rest}" if rest else path


def _members(obj: griffe.Object | griffe.Alias) -> Any:
    """Declared and (for a class) inherited members."""
    try:
        return obj.all_members if obj.is_class else obj.members
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return obj.members


def is_private(path: str) -> bool:
    """``chatcore._redact.mask_secrets``: a segment after the package is private."""
    return any(part.startswith("_") and not part.startswith("__") for part in path.split("."))


def public_names(root: griffe.Module) -> dict[str, str]:
    """Canonical path of each exported name -> its public path (``chatcore._client.Client``
    -> ``chatcore.Client``): the names in the ``__all__`` of every public module, a
    submodule's first (``chatcore.retry.RetryPolicy`` is where the reference renders it)."""
    modules: list[griffe.Module] = []

    def collect(mod: griffe.Module) -> None:
        modules.append(mod)
        for member in mod.members.values():
            if not member.is_alias and member.is_module and not is_private(member.path):
                collect(member)  # type: ignore[arg-type]

    collect(root)
    found: dict[str, str] = {}
    for mod in sorted(modules, key=lambda m: (m is root, m.path)):
        for name in mod.exports or ():
            member = mod.members.get(name) if isinstance(name, str) else None
            if isinstance(member, griffe.Alias):
                found.setdefault(member.target_path, f"{mod.path}.{name}")
    return found


def public_path(path: str, names: dict[str, str]) -> str:
    """``path`` through its longest exported prefix (``chatcore._client.Client.chat`` ->
    ``chatcore.Client.chat``); a path that is public already, or has no exported prefix,
    is unchanged."""
    if not is_private(path):
        return path
    parts = path.split(".")
    for cut in range(len(parts), 1, -1):
        prefix = ".".join(parts[:cut])
        if prefix in names:
            return ".".join([names[prefix], *parts[cut:]])
    return path


def rendered(root: griffe.Object, path: str) -> str:
    """The path to link for the public ``path``: the object itself where the reference
    shows it (it has a docstring), else its closest documented parent (an undocumented
    attribute is described by its class's or module's docstring). A path that names nothing
    is returned as is: its reference fails the strict build."""
    parts = path.split(".")
    if parts[0] != root.name:
        return path
    chain: list[griffe.Object | griffe.Alias] = [root]
    for part in parts[1:]:
        try:
            chain.append(_members(chain[-1])[part])
        except (KeyError, griffe.AliasResolutionError):
            return path
    for depth in range(len(chain) - 1, 0, -1):
        obj = chain[depth]
        try:
            documented = obj.is_module or obj.docstring is not None
        except griffe.AliasResolutionError:
            documented = False
        if documented:
            return ".".join(parts[: depth + 1])
    return root.name


def convert(
    text: str, obj: griffe.Object | griffe.Alias, root: griffe.Module, names: dict[str, str]
) -> str:
    """``text`` with every Sphinx role replaced by a cross-reference (Markdown)."""

    def replace(match: re.Match[str]) -> str:
        body = match["body"].strip()
        titled = _TITLED.match(body)
        if titled:
            title, target = titled["title"], titled["target"].strip()
        else:
            target = body.lstrip("~!")
            title = target.rsplit(".", 1)[-1] if body.startswith("~") else target
        if match["role"] in ("meth", "func", "deco") and not title.endswith(")"):
            title += "()"
        code = f"<code>{html.escape(title)}</code>"
        if body.startswith("!"):
            return code
        path = public_path(resolve(obj, target) or target, names)
        if OURS.match(path) and not is_private(path):
            return f"[{code}][{rendered(root, path)}]"
        # elsewhere, or internal: a link where a page renders it (a public name's
        # canonical path, e.g. chatcore._client.Client), plain code otherwise
        return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'

    return ROLE.sub(replace, text)


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every docstring of a loaded package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._walk(pkg, pkg, public_names(pkg), set())

    def _walk(
        self, obj: griffe.Object, root: griffe.Module, names: dict[str, str], seen: set[int]
    ) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if obj.docstring is not None and ":" in obj.docstring.value:
            obj.docstring.value = convert(obj.docstring.value, obj, root, names)
        for member in obj.members.values():
            if not member.is_alias:
                self._walk(member, root, names, seen)  # type: ignore[arg-type]
