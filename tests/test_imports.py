"""The package's layering: no import circle between its modules (function-level imports included) and no
module importing another's private (``_name``) names."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "recbole_micro"


def module_imports():
    """``{module: {imported plugin module}}`` and the ``(module, name)`` private names one module takes from
    another, from the source: ``import``/``from`` statements at any depth, ``importlib.import_module`` of a
    constant name (a look-up by name is an import too), and ``alias._name`` on an imported plugin module."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph, private = {}, []
    for name, path in modules.items():
        deps, aliases = set(), {}
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("recbole_micro"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in modules else node.module)
                    if full in modules:
                        aliases[alias.asname or alias.name] = full
                    if alias.name.startswith("_"):
                        private.append((name, full))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("recbole_micro"):
                        deps.add(alias.name)
                        if alias.asname:
                            aliases[alias.asname] = alias.name
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr == "import_module" and node.args and isinstance(node.args[0], ast.Constant)
                  and str(node.args[0].value).startswith("recbole_micro")):
                deps.add(node.args[0].value)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id in aliases):
                private.append((name, f"{aliases[node.value.id]}.{node.attr}"))
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph, private


def reachable(graph, start):
    seen, todo = set(), [start]
    while todo:
        for dep in graph[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_no_import_circle():
    graph, _ = module_imports()
    assert {"recbole_micro.cli", "recbole_micro.tools.cli", "recbole_micro.tools.search"} <= set(graph)
    circular = {m: sorted(d for d in graph[m] if m in reachable(graph, d)) for m in graph if m in reachable(graph, m)}
    assert circular == {}


def test_no_private_names_imported_across_modules():
    _, private = module_imports()
    assert private == []


def test_the_tools_do_not_reach_back_into_the_command_line():
    graph, _ = module_imports()
    for module in graph:
        if module.startswith("recbole_micro.tools"):
            assert not {"recbole_micro.cli", "recbole_micro.commands"} & reachable(graph, module), module
