"""Stacks from compose files (issue 14, point 3): Compose's interpolation from the description's
variables only, the sample stack, every refusal as its exact line, and the mapping load_stack
returns. Expected values are written out, never recomputed."""

import textwrap

import pytest
from conftest import REPO
from swarmfabric.compose import service_spec
from swarmfabric.stack import InterpolationError, expand, load_stack

FILE = 'stacks/shop.yml'
ORIGIN = 'swarm.stacks.shop.variables'
VARIABLES = {'SET': 'v', 'EMPTY': '', 'WORD': 'two words'}
NETWORK_RULE = 'networks the file uses must be overlays of the description, declared with external: true'


def web(*lines, top=''):
    """A stack of one service web on appnet, with ``lines`` added to web and ``top`` after it."""
    service = ''.join(f'    {line}\n' for line in lines)
    return ('services:\n  web:\n    image: swarmfabric/task:1\n    networks: [appnet]\n' + service
            + 'networks:\n  appnet: {external: true}\n' + textwrap.dedent(top))


def load(tmp_path, text, variables=None, overlays=('appnet',), name='shop'):
    (tmp_path / 'stacks').mkdir(exist_ok=True)
    (tmp_path / FILE).write_text(textwrap.dedent(text))
    return load_stack(name, FILE, variables or {}, base_dir=str(tmp_path), overlays=set(overlays))


def errors(tmp_path, text, **kwargs):
    return load(tmp_path, text, **kwargs).errors


# ---------------------------------------------------------------- interpolation


@pytest.mark.parametrize(('text', 'expected'), [
    ('plain', 'plain'),
    ('$SET', 'v'),
    ('${SET}', 'v'),
    ('a${SET}b$SET.c', 'avbv.c'),
    ('${WORD}', 'two words'),
    # :- and - : a default when unset (":" also when empty)
    ('${UNSET:-d}', 'd'),
    ('${EMPTY:-d}', 'd'),
    ('${SET:-d}', 'v'),
    ('${UNSET-d}', 'd'),
    ('${EMPTY-d}', ''),
    # :+ and + : a replacement when set (":" only when not empty)
    ('${SET:+r}', 'r'),
    ('${EMPTY:+r}', ''),
    ('${UNSET:+r}', ''),
    ('${EMPTY+r}', 'r'),
    ('${UNSET+r}', ''),
    # :? and ? : the value when set
    ('${SET:?m}', 'v'),
    ('${SET?m}', 'v'),
    ('${EMPTY?m}', ''),
    # $$ is a literal $
    ('$$', '$'),
    ('$$SET', '$SET'),
    ('$${SET}', '${SET}'),
    ('$$$SET', '$v'),
    ('100$$', '100$'),
    # a default is interpolated itself, and only when it is used
    ('${UNSET:-${SET}x}', 'vx'),
    ('${UNSET:-a$$b}', 'a$b'),
    ('${SET:-${UNSET}}', 'v'),
    ('${UNSET:-}', ''),
])
def test_interpolation(text, expected):
    assert expand(text, VARIABLES, ORIGIN) == expected


UNSET = ('uses the variable {0}, which swarm.stacks.shop.variables does not set; set it there or write '
         '${{{0}:-default}} (Compose would put an empty string for {1})')


@pytest.mark.parametrize(('text', 'rule'), [
    ('$UNSET', UNSET.format('UNSET', '$UNSET')),
    ('${UNSET}', UNSET.format('UNSET', '${UNSET}')),
    ('$SET_X', UNSET.format('SET_X', '$SET_X')),  # a name takes every letter, digit and "_" it can
    ('${EMPTY:-${UNSET}}', UNSET.format('UNSET', '${UNSET}')),
    ('${UNSET:?give it a value}', 'needs the variable UNSET, which is not set in swarm.stacks.shop.variables: '
                                  'give it a value'),
    ('${UNSET?}', 'needs the variable UNSET, which is not set in swarm.stacks.shop.variables'),
    ('${EMPTY:?no empty ${SET}}', 'needs the variable EMPTY, which is empty: no empty v'),
    ('a $ b', 'has a "$" that starts no variable; write $$ for a literal $'),
    ('costs 5$', 'has a "$" that starts no variable; write $$ for a literal $'),
    ('$1', 'has a "$" that starts no variable; write $$ for a literal $'),
    ('${SET', 'has "${" without its closing "}"'),
    ('${UNSET:-${SET}', 'has "${" without its closing "}"'),
    ('${1X}', 'has ${1X}: 1X is not a variable name (letters, digits and "_", not starting with a digit)'),
    ('${}', 'has ${}: nothing is not a variable name (letters, digits and "_", not starting with a digit)'),
    ('${SET:x}', 'has ${SET:x}, which is none of ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, '
                 '${NAME?message}, ${NAME:+replacement} or ${NAME+replacement}'),
])
def test_interpolation_refusals(text, rule):
    with pytest.raises(InterpolationError) as caught:
        expand(text, VARIABLES, ORIGIN)
    assert str(caught.value) == rule


def test_the_process_environment_is_never_read(tmp_path, monkeypatch):
    monkeypatch.setenv('FROM_ENV', 'leaked')
    assert errors(tmp_path, web('environment: {A: "${FROM_ENV}"}')) == [
        f'{FILE}: services.web.environment.A: "${{FROM_ENV}}" ' + UNSET.format('FROM_ENV', '${FROM_ENV}')]


def test_every_string_value_is_interpolated_and_no_key(tmp_path):
    stack = load(tmp_path, """
        services:
          web:
            image: "swarmfabric/task:${TAG}"
            command: [sh, -c, "echo ${WORD} $$HOME"]
            environment:
              ${TAG}: "${WORD}"
              NUMBER: 7
              LITERAL: "$$x"
            labels: ["a=${TAG}"]
            networks:
              ${NET}: {aliases: ["${TAG}-alias"]}
            x-swarmfabric: {vip: "${VIP}"}
        networks:
          ${NET}: {external: true, name: "${NET}"}
        x-template: "${NOT_SET_AND_IGNORED}"
    """, variables={'TAG': '1', 'WORD': 'hi', 'NET': 'appnet', 'VIP': '10.20.0.9'})
    assert stack.errors == []
    # Keys stay as written: ${TAG} and ${NET} are keys, not values.
    assert stack.services['shop_web']['service'] == {
        'image': 'swarmfabric/task:1',
        'command': ['sh', '-c', 'echo hi $HOME'],
        'environment': {'${TAG}': 'hi', 'NUMBER': 7, 'LITERAL': '$x'},
        'labels': ['a=1'],
        'networks': {'${NET}': {'aliases': ['1-alias']}},
        'x-swarmfabric': {'vip': '10.20.0.9'},
    }
    assert stack.networks == {'${NET}': 'appnet'}


def test_an_unset_variable_is_refused_at_its_path_once(tmp_path):
    # Once: the value kept as written ("${REPLICAS}") is not an integer either, which is noise.
    assert errors(tmp_path, web('deploy: {replicas: "${REPLICAS}", labels: ["${A}", "ok=${B:-b}"]}')) == [
        f'{FILE}: services.web.deploy.labels[0]: "${{A}}" ' + UNSET.format('A', '${A}'),
        f'{FILE}: services.web.deploy.replicas: "${{REPLICAS}}" ' + UNSET.format('REPLICAS', '${REPLICAS}'),
    ]


def test_a_whole_value_from_a_variable_takes_the_type_of_its_field(tmp_path):
    stack = load(tmp_path, web('deploy: {replicas: "${N}", labels: {n: "${N}"}}', 'init: ${YES}',
                               'ports: [{target: "${PORT}", published: 8082}]', 'environment: {N: "${N}"}'),
                 variables={'N': 3, 'YES': True, 'PORT': '80'})
    assert stack.errors == []
    service = stack.services['shop_web']['service']
    assert service['deploy'] == {'replicas': 3, 'labels': {'n': '3'}}
    assert service['init'] is True
    assert service['ports'] == [{'target': 80, 'published': 8082}]
    assert service['environment'] == {'N': '3'}


def test_a_quoted_number_written_in_the_file_stays_a_string(tmp_path):
    assert errors(tmp_path, web('deploy: {replicas: "3"}')) == [
        f'{FILE}: services.web.deploy.replicas: "3" is not an integer (write it unquoted)']


def test_a_cast_value_is_still_checked(tmp_path):
    assert errors(tmp_path, web('deploy: {replicas: "${N}"}'), variables={'N': '-1'}) == [
        f'{FILE}: services.web.deploy.replicas: -1 is out of range 0..10000']


def test_the_description_variables(tmp_path):
    stack = load(tmp_path, web(), variables={'OK': 1.5, '1X': 'a', 'L': ['a'], 'N': None})
    assert stack.errors == [
        'swarm.stacks.shop.variables.1X: is not a variable name (letters, digits and "_", not starting with a digit)',
        'swarm.stacks.shop.variables.L: ["a"] is not a string, a number or a boolean (a variable is substituted '
        'into text)',
        'swarm.stacks.shop.variables.N: null is not a string, a number or a boolean (a variable is substituted '
        'into text)',
    ]


# ---------------------------------------------------------------- the sample


SAMPLE_VARIABLES = {'APP_REPLICAS': 2, 'GREETING': 'hello'}


def test_the_sample_stack_loads():
    stack = load_stack('shop', 'docs/examples/stack/shop.yml', SAMPLE_VARIABLES, base_dir=str(REPO),
                       overlays={'appnet', 'other'})
    here = REPO / 'docs' / 'examples' / 'stack'
    assert stack.errors == []
    assert stack.name == 'shop'
    assert stack.file == str(here / 'shop.yml')
    assert {name: entry['short_name'] for name, entry in stack.services.items()} == {'shop_kv': 'kv',
                                                                                     'shop_app': 'app'}
    assert stack.networks == {'appnet': 'appnet'}
    assert stack.secrets == {'kv_password': {'name': 'shop_kv_password', 'external': False,
                                             'file': str(here / 'kv_password.txt'), 'content': None}}
    assert stack.configs == {'index': {
        'name': 'shop_index', 'external': False, 'file': None,
        'content': '<p>shop: ${GREETING} is replaced when the stack is loaded: hello</p>\n'}}
    assert stack.volumes == {'kvdata': {'name': 'shop_kvdata', 'external': False, 'driver': None, 'driver_opts': {},
                                        'labels': {'io.swarmfabric.example': 'shop'}}}
    app = stack.services['shop_app']['service']
    assert app['image'] == 'swarmfabric/task:1'
    assert app['deploy'] == {'replicas': 2, 'resources': {'limits': {'memory': '64m'}},
                             'update_config': {'parallelism': 1, 'order': 'start-first'}}
    assert app['environment'] == {'KV_HOST': 'kv', 'GREETING': 'hello'}
    assert stack.services['shop_kv']['service']['deploy']['placement'] == {'constraints': ['node.labels.disk == ssd']}


def test_the_sample_converts_to_a_service_spec():
    stack = load_stack('shop', 'docs/examples/stack/shop.yml', SAMPLE_VARIABLES, base_dir=str(REPO),
                       overlays={'appnet'})
    spec = service_spec('kv', stack.services['shop_kv']['service'], networks=stack.networks, stack='shop',
                        volumes={k: v['name'] for k, v in stack.volumes.items()})
    assert spec['Name'] == 'shop_kv'
    assert spec['TaskTemplate']['Networks'] == [{'Target': 'appnet', 'Aliases': ['kv']}]
    assert spec['TaskTemplate']['Resources'] == {'Limits': {'MemoryBytes': 128 * 2 ** 20}}
    assert spec['TaskTemplate']['Placement'] == {'Constraints': ['node.labels.disk == ssd']}
    assert spec['TaskTemplate']['ContainerSpec']['Healthcheck']['Test'] == [
        'CMD-SHELL', 'echo ping | timeout 2 nc 127.0.0.1 6379 | grep -q ping']


def test_the_sample_needs_its_variables():
    stack = load_stack('shop', 'docs/examples/stack/shop.yml', {'APP_REPLICAS': 2}, base_dir=str(REPO),
                       overlays={'appnet'})
    assert len(stack.errors) == 2
    assert stack.errors[1] == (
        'docs/examples/stack/shop.yml: services.app.environment.GREETING: "${GREETING:?set '
        'swarm.stacks.shop.variables.GREETING}" needs the variable GREETING, which is not set in '
        'swarm.stacks.shop.variables: set swarm.stacks.shop.variables.GREETING')
    assert stack.errors[0].startswith('docs/examples/stack/shop.yml: configs.index.content: ')


# ---------------------------------------------------------------- refusals, each as its line


def test_a_missing_file(tmp_path):
    stack = load_stack('shop', FILE, {}, base_dir=str(tmp_path), overlays={'appnet'})
    assert stack.errors == [f'{FILE}: cannot read: No such file or directory (relative to the inventory '
                            f'directory {tmp_path})']
    assert stack.services == {}


def test_a_missing_absolute_file_names_no_directory(tmp_path):
    path = str(tmp_path / 'nowhere.yml')
    assert load_stack('shop', path, {}, base_dir='/elsewhere', overlays=set()).errors == [
        f'{path}: cannot read: No such file or directory']


def test_shown_path_names_the_file(tmp_path):
    (tmp_path / 'shop.yml').write_text(web('build: .'))
    stack = load_stack('shop', 'shop.yml', {}, base_dir=str(tmp_path), overlays={'appnet'},
                       shown_path='inventory/prod/shop.yml')
    assert stack.errors == ['inventory/prod/shop.yml: services.web.build: is ignored by swarm mode (docker stack '
                            'deploy); build and push the image first, then give image']


@pytest.mark.parametrize(('text', 'line'), [
    ('services:\n  web: [unclosed\n', "line 3, column 1: expected ',' or ']', but got '<stream end>' (while "
                                      'parsing a flow sequence at line 2, column 8)'),
    ('services:\n  web:\n    image: a\n   bad: x\n', "line 4, column 4: expected <block end>, but found "
                                                     "'<block mapping start>' (while parsing a block mapping at "
                                                     'line 2, column 3)'),
])
def test_a_syntax_error_names_line_and_column(tmp_path, text, line):
    assert errors(tmp_path, text) == [f'{FILE}: {line}']


def test_a_duplicate_key(tmp_path):
    text = web().replace('    image: swarmfabric/task:1\n', '    image: swarmfabric/task:1\n    image: other:2\n')
    assert errors(tmp_path, text) == [
        f'{FILE}: services.web.image: is given twice, on line 3 and line 4; YAML keeps only the last one: remove '
        'one of them']


@pytest.mark.parametrize(('text', 'line'), [
    ('', 'is empty; a compose file needs services:'),
    ('- a\n', '["a"] is not a mapping (a compose file has services:, networks:, ...)'),
    ('networks: {}\n', 'services: is required'),
    ('services: {}\n', 'services: must name at least one service'),
    ('services: [web]\n', 'services: ["web"] is not a mapping'),
])
def test_the_file_shape(tmp_path, text, line):
    assert errors(tmp_path, text) == [f'{FILE}: {line}']


def test_an_unknown_top_level_key(tmp_path):
    assert errors(tmp_path, web(top='volume: {data: {}}\nincludes: [a.yml]\n')) == [
        f'{FILE}: includes: unknown top-level key (a stack file takes: version, name, services, networks, '
        'volumes, secrets, configs and x- extensions)',
        f'{FILE}: volume: unknown top-level key (a stack file takes: version, name, services, networks, volumes, '
        'secrets, configs and x- extensions); did you mean volumes?',
    ]


def test_version_and_extensions_are_ignored(tmp_path):
    stack = load(tmp_path, 'version: "3.8"\nx-common: &common {image: "${NOT_SET}"}\n' + web())
    assert stack.errors == []


@pytest.mark.parametrize(('networks', 'lines'), [
    ('appnet:\n', [f'networks.appnet: is not external: {NETWORK_RULE}']),
    ('appnet: {external: false}\n', [f'networks.appnet: is not external: {NETWORK_RULE}']),
    ('appnet: {driver: overlay}\n', [f'networks.appnet.driver: is not allowed: {NETWORK_RULE}',
                                     f'networks.appnet: is not external: {NETWORK_RULE}']),
    ('appnet: {external: true, attachable: true}\n', [f'networks.appnet.attachable: is not allowed: {NETWORK_RULE}']),
    ('appnet: {external: "yes"}\n', ['networks.appnet.external: "yes" is not a boolean (write true or false, '
                                     'unquoted)']),
    ('appnet: {external: {name: appnet}}\n', ['networks.appnet.external: is the obsolete form external: {name: '
                                              '...}; write external: true and name: next to it']),
    ('appnet: {external: true, name: other}\n', [f'networks.appnet: "other" is not an overlay of the description '
                                                 f'(overlays: appnet, dbnet); {NETWORK_RULE}']),
])
def test_networks_are_external_overlays(tmp_path, networks, lines):
    text = web().replace('networks:\n  appnet: {external: true}\n', 'networks:\n  ' + networks)
    assert errors(tmp_path, text, overlays=('appnet', 'dbnet')) == sorted(f'{FILE}: {line}' for line in lines)


def test_a_network_named_in_the_file_differently(tmp_path):
    text = web().replace('[appnet]', '[front]').replace('  appnet: {external: true}', '  front: {external: true, '
                                                                                       'name: appnet}')
    stack = load(tmp_path, text)
    assert stack.errors == []
    assert stack.networks == {'front': 'appnet'}


def test_a_service_without_networks(tmp_path):
    # docker stack deploy would attach <stack>_default; an empty list is no networks either.
    for given in ('command: ["true"]', 'networks: []', 'networks: {}'):
        text = web(given).replace('    networks: [appnet]\n', '', 1)
        assert errors(tmp_path, text) == [
            f"{FILE}: services.web: needs networks: a stack's services attach to overlays of the description"]


def test_a_service_network_must_be_declared(tmp_path):
    assert errors(tmp_path, web().replace('[appnet]', '[appnet, dbnet]'), overlays=('appnet', 'dbnet')) == [
        f'{FILE}: services.web.networks[1]: "dbnet" is not a declared network (declared: appnet)']


def test_an_unknown_secret_and_config_reference(tmp_path):
    assert errors(tmp_path, web('secrets: [nope]', 'configs: [{source: cfg, target: /x}]')) == [
        f'{FILE}: services.web.configs[0].source: "cfg" is not a declared config (declared: none)',
        f'{FILE}: services.web.secrets[0]: "nope" is not a declared secret (declared: none)',
    ]


def test_ignored_and_v1_keys_are_refused_by_check_service(tmp_path):
    assert errors(tmp_path, web('build: .', 'depends_on: [db]', 'replicas: 2', 'restart: always')) == [
        f'{FILE}: services.web.build: is ignored by swarm mode (docker stack deploy); build and push the image '
        'first, then give image',
        f'{FILE}: services.web.depends_on: is ignored by swarm mode (docker stack deploy); swarm starts services '
        'in any order: give the dependent one a healthcheck and retries',
        f"{FILE}: services.web.replicas: is format v1; in format v2 (Compose's shape) write deploy.replicas",
        f'{FILE}: services.web.restart: is ignored by swarm mode (docker stack deploy); use deploy.restart_policy',
    ]


def test_a_bad_value_has_the_file_and_the_path_inside_it(tmp_path):
    assert errors(tmp_path, web('deploy: {replicas: -1}')) == [
        f'{FILE}: services.web.deploy.replicas: -1 is out of range 0..10000']


def test_the_name_must_be_the_stack_name(tmp_path):
    assert errors(tmp_path, 'name: other\n' + web()) == [
        f'{FILE}: name: "other" is not the stack\'s name shop (swarm.stacks.shop); write shop or remove it']
    assert errors(tmp_path, 'name: "${STACK}"\n' + web(), variables={'STACK': 'shop'}) == []


def test_service_names(tmp_path):
    long = 'a' * 59  # shop_ + 59 = 64 characters
    text = web().replace('  web:', f'  {long}:') + 'x-ok: 1\n'
    assert errors(tmp_path, text) == [
        f'{FILE}: services.{long}: the service name shop_{long} is 64 characters; Docker allows at most 63 (the '
        'stack name, "_" and the service name)']
    assert errors(tmp_path, web().replace('  web:', f'  {long[:-1]}:')) == []
    assert errors(tmp_path, web().replace('  web:', '  Web_1:')) == [
        f'{FILE}: services.Web_1: the name must be 1 to 63 lowercase letters, digits or "-", starting with a letter '
        "and ending with a letter or digit (Docker's service-name rule, narrowed to a DNS name)"]


def test_the_stack_name(tmp_path):
    assert errors(tmp_path, web(), name='Shop') == [
        'swarm.stacks.Shop: the stack name must be 1 to 63 lowercase letters, digits or "-", starting with a letter '
        "and ending with a letter or digit (Docker's service-name rule, narrowed to a DNS name)"]


# ---------------------------------------------------------------- secrets, configs, volumes


def test_secret_and_config_files_are_relative_to_the_compose_file(tmp_path):
    (tmp_path / 'stacks').mkdir()
    (tmp_path / 'stacks' / 'pw.txt').write_text('x')
    stack = load(tmp_path, web(top="""
        secrets:
          pw: {file: pw.txt}
          missing: {file: ../missing.txt}
        configs:
          absent: {file: /nonexistent/swarmfabric.conf}
    """))
    assert stack.errors == [
        f'{FILE}: configs.absent.file: "/nonexistent/swarmfabric.conf" cannot be read: No such file or directory',
        f'{FILE}: secrets.missing.file: "../missing.txt" cannot be read: No such file or directory (relative to '
        f"the compose file's directory {tmp_path / 'stacks'})",
    ]
    assert stack.secrets == {'pw': {'name': 'shop_pw', 'external': False, 'file': str(tmp_path / 'stacks' / 'pw.txt'),
                                    'content': None}}


def test_secret_and_config_shapes_are_refused(tmp_path):
    assert errors(tmp_path, web(top="""
        secrets:
          env: {environment: DB_PASSWORD}
          drv: {driver: vault}
          none: {}
          both: {file: x.txt, external: true}
          cont: {content: text}
          typo: {fiel: x.txt}
        configs:
          many: {content: a, external: true}
          num: {content: 5}
    """)) == sorted([
        f'{FILE}: configs.many: has content and external; give only one of file, content or external: true',
        f'{FILE}: configs.num.content: 5 is not a string',
        f'{FILE}: secrets.both: has file and external; give only one of file or external: true',
        f'{FILE}: secrets.cont.content: unknown key (allowed: file, external, name)',
        f'{FILE}: secrets.cont: needs one of file or external: true',
        f'{FILE}: secrets.drv.driver: is not supported: secret and config drivers (plugins) are not used by this '
        'toolkit; give file',
        f'{FILE}: secrets.env.environment: is not supported: the value would come from the environment of the '
        'controller that deploys; write it to a file next to the compose file and give file',
        f'{FILE}: secrets.none: needs one of file or external: true',
        f'{FILE}: secrets.typo.fiel: unknown key (allowed: file, external, name); did you mean file?',
        f'{FILE}: secrets.typo: needs one of file or external: true',
    ])


def test_object_names(tmp_path):
    stack = load(tmp_path, web(top="""
        secrets:
          ext: {external: true}
          ext_named: {external: true, name: prod_db_password}
        configs:
          named: {content: "${WORD}", name: shop_nginx_v2}
        volumes:
          data:
          cache: {driver: local, driver_opts: {type: tmpfs, device: tmpfs, o: "size=64m"}, labels: [a=1, b=]}
          kept: {external: true, name: legacy_data}
          plain_ext: {external: true}
    """), variables={'WORD': 'w'})
    assert stack.errors == []
    assert stack.secrets == {
        'ext': {'name': 'ext', 'external': True, 'file': None, 'content': None},
        'ext_named': {'name': 'prod_db_password', 'external': True, 'file': None, 'content': None},
    }
    assert stack.configs == {'named': {'name': 'shop_nginx_v2', 'external': False, 'file': None, 'content': 'w'}}
    assert stack.volumes == {
        'data': {'name': 'shop_data', 'external': False, 'driver': None, 'driver_opts': {}, 'labels': {}},
        'cache': {'name': 'shop_cache', 'external': False, 'driver': 'local',
                  'driver_opts': {'type': 'tmpfs', 'device': 'tmpfs', 'o': 'size=64m'}, 'labels': {'a': '1', 'b': ''}},
        'kept': {'name': 'legacy_data', 'external': True, 'driver': None, 'driver_opts': {}, 'labels': {}},
        'plain_ext': {'name': 'plain_ext', 'external': True, 'driver': None, 'driver_opts': {}, 'labels': {}},
    }


def test_volume_refusals(tmp_path):
    assert errors(tmp_path, web('volumes: ["data:/data", "undeclared:/u", {type: volume, source: other, '
                                'target: /o}, "/srv:/srv", "/anonymous"]', top="""
        volumes:
          data: {drivr: local}
          bad: [1]
          ext: {external: true, driver: local}
    """)) == sorted([
        f'{FILE}: services.web.volumes[1]: "undeclared" is not a declared volume (declared: bad, data, ext)',
        f'{FILE}: services.web.volumes[2].source: "other" is not a declared volume (declared: bad, data, ext)',
        f'{FILE}: volumes.bad: [1] is not a mapping',
        f'{FILE}: volumes.data.drivr: unknown key (allowed: driver, driver_opts, labels, external, name); did you '
        'mean driver?',
        f"{FILE}: volumes.ext: is external: it takes only name (its driver, options and labels are the existing "
        "volume's)",
    ])


def test_the_result_of_a_stack_with_problems_still_lists_what_was_read(tmp_path):
    stack = load(tmp_path, web('deploy: {replicas: -1}'))
    assert stack.errors and list(stack.services) == ['shop_web']
    assert stack.services['shop_web'] == {'short_name': 'web', 'service': {
        'image': 'swarmfabric/task:1', 'networks': ['appnet'], 'deploy': {'replicas': -1}}}


def test_paths_are_absolute_with_a_relative_inventory_directory(monkeypatch):
    monkeypatch.chdir(REPO / 'docs')
    stack = load_stack('shop', 'stack/shop.yml', SAMPLE_VARIABLES, base_dir='examples', overlays={'appnet'})
    assert stack.errors == []
    assert stack.file == str(REPO / 'docs' / 'examples' / 'stack' / 'shop.yml')
    assert stack.secrets['kv_password']['file'] == str(REPO / 'docs' / 'examples' / 'stack' / 'kv_password.txt')
