"""The module reference (docs/modules/reference/) is generated from each module's DOCUMENTATION,
EXAMPLES and RETURN; it must be current, have a page per module, and RETURN must name every key a
module returns. Regenerate with:

    python docs/modules/generate.py
"""

import ast
import importlib.util
import pathlib

import pytest
import yaml
from ansible.plugins.loader import fragment_loader
from ansible.utils.plugin_docs import get_docstring

REPO = pathlib.Path(__file__).resolve().parents[1]
REGENERATE = 'python docs/modules/generate.py'

_spec = importlib.util.spec_from_file_location('sf_generate', REPO / 'docs' / 'modules' / 'generate.py')
generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate)

MODULES = generate.module_files()
MODULE_UTILS = sorted((REPO / 'plugins' / 'module_utils' / 'swarmfabric').glob('*.py'))
# Keys every module may return without RETURN naming them (Ansible's own, and the diff-mode diff).
COMMON = {'changed', 'diff', 'msg', 'exception', 'failed', 'invocation', 'warnings', 'deprecations', 'rc'}
EXITS = {'exit', 'exit_json', 'fail', 'fail_json', 'result'}


def test_every_module_has_a_current_page():
    wanted = generate.pages()
    assert {f'{path.stem}.md' for path in MODULES} <= set(wanted)
    present = {path.name for path in generate.REFERENCE.glob('*.md')}
    missing = sorted(set(wanted) - present)
    extra = sorted(present - set(wanted))
    stale = sorted(name for name in set(wanted) & present if (generate.REFERENCE / name).read_text() != wanted[name])
    assert not (missing or extra or stale), (
        f'docs/modules/reference is out of date (missing {missing}, no such module {extra}, stale {stale}): '
        f'run {REGENERATE}')


def test_fabric_capabilities_has_a_page():
    assert (generate.REFERENCE / 'fabric_capabilities.md').is_file(), f'run {REGENERATE}'


@pytest.mark.parametrize('path', MODULES, ids=lambda p: p.stem)
def test_documentation_parses_with_ansibles_loader(path):
    fragment_loader.add_directory(str(REPO / 'plugins' / 'doc_fragments'))
    doc, examples, returns, _ = get_docstring(str(path), fragment_loader, is_module=True)
    assert doc and doc['module'] == path.stem
    assert doc.get('short_description') and doc.get('options') is not None
    for name, option in doc['options'].items():
        assert option.get('description'), f'{path.stem}: option {name} has no description'
    assert returns, f'{path.stem}: no RETURN'
    for name, value in returns.items():
        assert value.get('description') and value.get('returned'), f'{path.stem}: return {name} is incomplete'
    yaml.safe_load(examples)  # EXAMPLES is YAML


@pytest.mark.parametrize('path', MODULES, ids=lambda p: p.stem)
def test_options_match_the_argument_spec(path):
    """Every option of argument_spec is documented (by the module or a doc fragment it extends),
    and nothing else (top level)."""
    spec = _argument_spec(path)
    if spec is None:
        pytest.skip('argument_spec is not a literal')
    documented = set(generate.load(path)[0].get('options') or {})
    assert spec == documented


def _argument_spec(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.keyword) and node.arg == 'argument_spec':
            return _dict_keys(node.value)
    return None


def _dict_keys(node):
    """The string keys of a dict display or a dict(...) call; None for anything else."""
    if isinstance(node, ast.Dict):
        return {key.value for key in node.keys if isinstance(key, ast.Constant) and isinstance(key.value, str)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'dict':
        return {keyword.arg for keyword in node.keywords if keyword.arg}
    return None


def _same(a, b):
    """The same variable: a name, or an attribute of a name (self.state)."""
    if isinstance(a, ast.Name) and isinstance(b, ast.Name):
        return a.id == b.id
    if isinstance(a, ast.Attribute) and isinstance(b, ast.Attribute):
        return a.attr == b.attr and _same(a.value, b.value)
    return False


def _called(node):
    return node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, 'id', None)


class Keys:
    """The keys a module hands to exit_json or fail_json, found statically: keywords of the exit calls,
    and the keys of each ``**mapping`` passed to them, followed through local variables, attributes
    (self.state), dict displays, dict(...), comprehensions over .items(), .update() and item stores
    (less .pop()), and a few calls deep into the module and the shared module_utils."""

    def __init__(self, path):
        self.tree = ast.parse(path.read_text())
        self.functions = {}
        package = 'ansible.module_utils.swarmfabric'
        imported = {node.module.rsplit('.', 1)[-1] for node in ast.walk(self.tree)
                    if isinstance(node, ast.ImportFrom) and (node.module or '').startswith(package + '.')}
        imported |= {alias.name for node in ast.walk(self.tree) if isinstance(node, ast.ImportFrom)
                     and node.module == package for alias in node.names}
        utils = [util for util in MODULE_UTILS if util.stem in imported]
        for tree in [self.tree, *(ast.parse(util.read_text()) for util in utils)]:
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    self.functions.setdefault(node.name, []).append(node)

    def of(self, expr, scope, depth=0, index=None):
        if depth > 8 or expr is None:
            return set()
        keys = set()
        if isinstance(expr, ast.Dict):
            keys |= _dict_keys(expr)
            for key, value in zip(expr.keys, expr.values, strict=True):
                if key is None:  # {**other}
                    keys |= self.of(value, scope, depth + 1)
        elif isinstance(expr, ast.DictComp):
            for generator in expr.generators:
                source = generator.iter
                if isinstance(source, ast.Call) and isinstance(source.func, ast.Attribute) \
                        and source.func.attr == 'items':
                    keys |= self.of(source.func.value, scope, depth + 1)
                for test in generator.ifs:  # {k: v for k, v in x.items() if k != "error"}
                    if (isinstance(test, ast.Compare) and isinstance(test.ops[0], ast.NotEq)
                            and isinstance(test.comparators[0], ast.Constant)):
                        keys.discard(test.comparators[0].value)
        elif isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id == 'dict':
            keys |= _dict_keys(expr)
            for arg in expr.args:
                keys |= self.of(arg, scope, depth + 1)
        elif isinstance(expr, ast.IfExp):
            keys |= self.of(expr.body, scope, depth + 1) | self.of(expr.orelse, scope, depth + 1)
        elif isinstance(expr, ast.Call):
            if _called(expr) in EXITS:  # self.change.result(**out)
                for keyword in expr.keywords:
                    keys |= {keyword.arg} if keyword.arg else self.of(keyword.value, scope, depth + 1)
            for function in self.functions.get(_called(expr), []):
                for node in ast.walk(function):
                    if isinstance(node, ast.Return) and node.value is not None:
                        values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
                        if index is not None:  # a, b = f(): b is the second element f returns
                            values = values[index:index + 1] if isinstance(node.value, ast.Tuple) else []
                        for value in values:
                            keys |= self.of(value, function, depth + 1)
        elif isinstance(expr, ast.Name):
            keys |= self.variable(expr, scope, depth)
        elif isinstance(expr, ast.Attribute):
            keys |= self.variable(expr, self.tree, depth)  # an attribute is set anywhere in the module
        return keys

    def variable(self, variable, scope, depth):
        keys, popped = set(), set()
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    items = target.elts if isinstance(target, ast.Tuple) else [target]
                    for position, item in enumerate(items):
                        if _same(item, variable):
                            where = position if isinstance(target, ast.Tuple) else None
                            keys |= self.of(node.value, scope, depth + 1, where)
                        elif (isinstance(item, ast.Subscript) and _same(item.value, variable)
                              and isinstance(item.slice, ast.Constant) and isinstance(item.slice.value, str)):
                            keys.add(item.slice.value)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and _same(node.func.value, variable) and node.args):
                first = node.args[0]
                named = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
                if node.func.attr == 'setdefault' and named:
                    keys.add(named)
                elif node.func.attr == 'pop' and named:
                    popped.add(named)
                elif node.func.attr == 'update':
                    keys |= self.of(first, scope, depth + 1)
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and _same(node.func.value, variable) and node.func.attr == 'update'):
                keys |= {keyword.arg for keyword in node.keywords if keyword.arg}
        return keys - popped

    def returned(self):
        keys = set()
        for scope in ast.walk(self.tree):
            if not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(scope):
                if isinstance(node, ast.Call) and _called(node) in EXITS:
                    for keyword in node.keywords:
                        keys |= {keyword.arg} if keyword.arg else self.of(keyword.value, scope)
        return keys


def returned_keys(path):
    return Keys(path).returned()


@pytest.mark.parametrize('path', MODULES, ids=lambda p: p.stem)
def test_return_names_every_returned_key(path):
    documented = set(generate.load(path)[2])
    found = returned_keys(path) - COMMON
    assert found, f'{path.stem}: no returned key found (the static search needs updating)'
    assert 'actions' in documented, f'{path.stem}: RETURN does not name actions (the skeleton returns it)'
    assert not found - documented, f'{path.stem}: RETURN does not name {sorted(found - documented)}'


def test_the_static_search_finds_keys_it_must():
    """The search itself can fail: it finds what swarm_node and nft_table return."""
    by_name = {path.stem: path for path in MODULES}
    node = returned_keys(by_name['swarm_node'])
    assert {'node_state', 'node_id', 'cluster_id', 'is_manager', 'swarm_name', 'manager_addr', 'autolock',
            'join_tokens', 'nodes', 'unlock_key', 'actions'} <= node
    assert 'error' not in node  # filtered out of the result
    nft = returned_keys(by_name['nft_table'])
    assert {'lines_added', 'lines_removed', 'script'} <= nft and not {'before', 'after'} & nft  # popped
    xfrm = returned_keys(by_name['xfrm_tunnel'])
    assert {'epoch', 'live_sas', 'outbound', 'sa_epochs'} <= xfrm and 'drifted_hosts' not in xfrm


def test_design_notes_hold_no_generated_tables():
    """docs/modules/<module>.md keeps the prose; option and return tables live in the reference."""
    for notes in sorted(generate.NOTES.glob('*.md')):
        text = notes.read_text()
        assert '| option |' not in text and '| key | type |' not in text, notes.name


_CONSTANTS = importlib.util.spec_from_file_location(
    'sf_constants', REPO / 'plugins' / 'module_utils' / 'swarmfabric' / 'constants.py')
CONSTANTS = importlib.util.module_from_spec(_CONSTANTS)
_CONSTANTS.loader.exec_module(CONSTANTS)
UNKNOWN = object()


def _value(node, names=None):
    """A literal of an argument_spec, or a constant of module_utils/swarmfabric/constants.py
    or of the module (also through dict(...) or list(...)); UNKNOWN for anything else."""
    names = names or {}
    try:
        return ast.literal_eval(node)
    except ValueError:
        pass
    if isinstance(node, ast.Call) and getattr(node.func, 'id', None) in ('dict', 'list', 'sorted') \
            and len(node.args) == 1 and not node.keywords:
        inner = _value(node.args[0], names)
        return UNKNOWN if inner is UNKNOWN else {'dict': dict, 'list': list, 'sorted': sorted}[node.func.id](inner)
    if isinstance(node, ast.Name) and node.id in names:
        return _value(names.pop(node.id), names)  # popped: a name defined by itself ends here
    if isinstance(node, ast.Name) and hasattr(CONSTANTS, node.id):
        return getattr(CONSTANTS, node.id)
    return UNKNOWN


def _spec_fields(node):
    if isinstance(node, ast.Dict):
        return {key.value: value for key, value in zip(node.keys, node.values, strict=True)
                if isinstance(key, ast.Constant)}
    if isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'dict':
        return {keyword.arg: keyword.value for keyword in node.keywords if keyword.arg}
    return None


def _disagreements(spec, documented, names, prefix=''):
    out = []
    for name, node in spec.items():
        fields, doc = _spec_fields(node), (documented or {}).get(name) or {}
        if fields is None:
            continue
        for key, empty in (('type', 'str'), ('default', None), ('choices', None), ('elements', None),
                           ('required', False)):
            wanted = _value(fields[key], dict(names)) if key in fields else empty
            if wanted is UNKNOWN:
                continue
            said = doc.get(key, empty)
            if key == 'default' and wanted in ({}, [], None) and said in ({}, [], None):
                continue  # an empty default, written either way
            if wanted != said:
                out.append(f'{prefix}{name}: {key} is {wanted!r} in argument_spec, {said!r} in DOCUMENTATION')
        if 'options' in fields and _spec_fields(fields['options']) is not None:
            out += _disagreements(_spec_fields(fields['options']), doc.get('suboptions'), names, f'{prefix}{name}.')
    return out


@pytest.mark.parametrize('path', MODULES, ids=lambda p: p.stem)
def test_documentation_agrees_with_the_argument_spec(path):
    """Types, defaults, choices and required in DOCUMENTATION are the argument_spec's (one source of
    truth for the reference)."""
    tree = ast.parse(path.read_text())
    spec = next((_spec_fields(node.value) for node in ast.walk(tree)
                 if isinstance(node, ast.keyword) and node.arg == 'argument_spec'), None)
    if spec is None:
        pytest.skip('argument_spec is not a literal')
    names = {node.targets[0].id: node.value for node in tree.body
             if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)}
    assert _disagreements(spec, generate.load(path)[0].get('options'), names) == []
