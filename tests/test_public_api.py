"""The public API's signals: ``__all__`` in every module, type hints on what packages export.

Read from the source (``ast``), so the checks cost no TensorFlow import.
"""

import ast
import builtins
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_regseg"
MODULES = sorted(PACKAGE.rglob("*.py"))


def module_id(path):
    return str(path.relative_to(PACKAGE.parent))


def parse(path):
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def declared_all(tree):
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__"
                                                for t in node.targets):
            return node.value
    return None


def top_level_bindings(tree):
    names = set()
    for node in tree.body + type_checking_imports(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def type_checking_imports(tree):
    """The imports under ``if typing.TYPE_CHECKING:`` (names for annotations only)."""
    return [item for node in tree.body if isinstance(node, ast.If)
            and "TYPE_CHECKING" in ast.unparse(node.test) for item in node.body]


@pytest.mark.parametrize("path", MODULES, ids=module_id)
def test_every_module_declares_what_it_exports(path):
    tree = parse(path)
    value = declared_all(tree)
    assert value is not None, f"{module_id(path)} has no __all__"
    if isinstance(value, ast.Call):   # sorted(...) of a computed table (methods/__init__)
        return
    assert isinstance(value, ast.List) and all(
        isinstance(e, ast.Starred) or isinstance(e, ast.Constant) and isinstance(e.value, str)
        for e in value.elts), f"{module_id(path)}: __all__ must be a list of names"
    exported = [e.value for e in value.elts if isinstance(e, ast.Constant)]
    assert len(exported) == len(set(exported)), f"{module_id(path)}: a name twice in __all__"
    bound = top_level_bindings(tree)
    lazy = any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body)
    unbound = [n for n in exported if n not in bound]
    assert lazy or not unbound, f"{module_id(path)}: __all__ names {unbound}, never defined"
    defined = [n.name for n in tree.body
               if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_")]
    missing = [n for n in defined if n not in exported]
    assert not missing, f"{module_id(path)}: public {missing} not in __all__ (or make it _private)"


# Entry points users call that no subpackage re-exports (training loads lazily).
ENTRY_POINTS = {"keras_regseg.training.trainer": {"train"},
                "keras_regseg.training.config": {"TrainConfig"}}


def exported_sources():
    """``{module name: names}`` re-exported by the subpackages, plus the entry points."""
    sources = {module: set(names) for module, names in ENTRY_POINTS.items()}
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        tree = parse(init)
        value = declared_all(tree)
        if isinstance(value, ast.List):   # from-imports of the names __all__ lists
            exported = {e.value for e in value.elts}
            for node in tree.body:
                if isinstance(node, ast.ImportFrom) and node.module:
                    sources.setdefault(node.module, set()).update(
                        a.name for a in node.names if (a.asname or a.name) in exported)
        for node in tree.body:   # lazy packages: {name: submodule} (methods/__init__)
            if (isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_EXPORTS"):
                table = ast.literal_eval(node.value)
                package = init.parent.relative_to(PACKAGE.parent).as_posix().replace("/", ".")
                for name, module in table.items():
                    sources.setdefault(f"{package}.{module}", set()).add(name)
    return sources


def package_exports():
    """``(module path, function node)`` of every exported function and class constructor."""
    found = []
    for module, wanted in sorted(exported_sources().items()):
        source = PACKAGE.parent / (module.replace(".", "/") + ".py")
        if not source.exists():
            continue
        for item in parse(source).body:
            if isinstance(item, ast.FunctionDef) and item.name in wanted:
                found.append((source, item))
            elif isinstance(item, ast.ClassDef) and item.name in wanted:
                found += [(source, f) for f in item.body if isinstance(f, ast.FunctionDef)
                          and f.name == "__init__"]
    return found


EXPORTS = package_exports()


def runtime_bindings(tree):
    """Top-level names bound when the module runs (not those under ``TYPE_CHECKING``)."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


@pytest.mark.parametrize("module, names", sorted(exported_sources().items()))
def test_every_exported_name_exists_where_its_package_says(module, names):
    source = PACKAGE.parent / (module.replace(".", "/") + ".py")
    if not source.exists():   # a subpackage: its own __init__ declares it
        source = source.with_suffix("") / "__init__.py"
    assert source.exists(), f"{module} is exported from but does not exist"
    missing = sorted(set(names) - runtime_bindings(parse(source)))
    assert not missing, f"{module} does not define {missing}"


def test_the_packages_export_functions_to_check():
    assert len(EXPORTS) > 40


@pytest.mark.parametrize("source, function", EXPORTS,
                         ids=[f"{module_id(s)}:{f.name}:{f.lineno}" for s, f in EXPORTS])
def test_exported_functions_are_typed(source, function):
    arguments = function.args
    parameters = [a for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs
                  if a.arg not in ("self", "cls")]
    parameters += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
    untyped = [a.arg for a in parameters if a.annotation is None]
    where = f"{module_id(source)}:{function.lineno} {function.name}"
    assert not untyped, f"{where}: parameters without a type hint: {untyped}"
    assert function.name == "__init__" or function.returns is not None, (
        f"{where}: no return type hint")


@pytest.mark.parametrize("source, function", EXPORTS,
                         ids=[f"{module_id(s)}:{f.name}:{f.lineno}" for s, f in EXPORTS])
def test_type_hints_name_what_their_module_knows(source, function):
    arguments = function.args
    annotations = [a.annotation for a in arguments.posonlyargs + arguments.args
                   + arguments.kwonlyargs + [arguments.vararg, arguments.kwarg]
                   if a is not None and a.annotation is not None]
    annotations += [function.returns] if function.returns is not None else []
    used = {n.id for annotation in annotations for n in ast.walk(annotation)
            if isinstance(n, ast.Name)}
    known = top_level_bindings(parse(source)) | set(dir(builtins))
    unknown = sorted(used - known)
    assert not unknown, f"{module_id(source)}:{function.lineno}: hints name {unknown}, never imported"
