"""The one module loader and the one harness of the unit tests.

The shared package is importable as `swarmfabric` and as
`ansible.module_utils.swarmfabric` (the name the modules in library/ use).
`run_module` runs a module's main() as Ansible would (argument parsing kept)
with two seams scripted, in the style of ansible's test_iptables:
AnsibleModule.run_command answers from a list of (rc, out, err), and the
Docker Engine API answers at its socket (docker_api's connection class), so
the real client builds every URL, query and JSON body the tests assert on.
"""

import copy
import functools
import importlib.util
import json
import pathlib
import sys
from urllib.parse import parse_qsl, unquote, urlsplit

import ansible.module_utils as amu
import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

REPO = pathlib.Path(__file__).resolve().parents[2]
MODULE_UTILS = str(REPO / 'plugins' / 'module_utils')
if MODULE_UTILS not in sys.path:
    sys.path.insert(0, MODULE_UTILS)
if MODULE_UTILS not in amu.__path__:
    amu.__path__.append(MODULE_UTILS)

# The name the modules import it by (a second import as `swarmfabric.docker_api` is another module).
from ansible.module_utils.swarmfabric import docker_api  # after the path is set


def load_file(name, path):
    """Import one Python file as a plain module (a module of library/, a plugin)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_module(name):
    """Import library/<name>.py."""
    return load_file(name, REPO / 'library' / f'{name}.py')


# --- run_command ---------------------------------------------------------------


class Commands:
    """Scripted run_command: ``answers`` is a list of (rc, out, err), one per call in order
    (a call past the end answers (0, "", "")), or a function (argv, data) -> (rc, out, err).
    ``calls`` records (argv, data) of every call."""

    def __init__(self, answers=()):
        self.answers = answers if callable(answers) else list(answers)
        self.calls = []

    def __call__(self, argv, data=None):
        self.calls.append((list(argv), data))
        if callable(self.answers):
            return self.answers(list(argv), data)
        return self.answers.pop(0) if self.answers else (0, "", "")

    @property
    def argvs(self):
        return [argv for argv, _data in self.calls]


# --- the Docker Engine API at its socket ------------------------------------------


class Status:
    """An HTTP error answer of the daemon."""

    def __init__(self, status, message):
        self.status, self.message = status, message


class Seq:
    """Answers in turn, one per call; the last one repeats."""

    def __init__(self, *values):
        self.values = list(values)

    def next(self):
        return self.values.pop(0) if len(self.values) > 1 else self.values[0]


class Docker:
    """The daemon behind the socket. ``answers`` maps (METHOD, path) or a GET's path to a body,
    a Status, or a Seq of those; a write with no answer gets 200 and no body. ``calls``
    records (method, path, query, body) with the API version prefix taken off, the query
    decoded (JSON filters parsed) and the body parsed from the JSON the client sent."""

    def __init__(self, answers=None, api_version="1.41"):
        self.answers = dict(answers or {})
        self.answers.setdefault(("GET", "/version"), {"ApiVersion": api_version})
        self.calls = []

    def respond(self, method, path, query, body):
        """The answer to one request; a stateful daemon overrides this."""
        value = self.answers.get((method, path), self.answers.get(path) if method == "GET" else None)
        if isinstance(value, Seq):
            value = value.next()
        return copy.deepcopy(value)

    def handle(self, method, url, body):
        parts = urlsplit(url)
        path = unquote(parts.path)
        if path.startswith("/v1."):
            path = "/" + path.split("/", 2)[2]
        query = {}
        for key, value in parse_qsl(parts.query):
            try:
                query[key] = json.loads(value) if value[:1] in "[{" else value
            except ValueError:
                query[key] = value
        body = json.loads(body) if body else None
        if path == "/version":
            return self.answers[("GET", "/version")]
        self.calls.append((method, path, query or None, copy.deepcopy(body)))
        return self.respond(method, path, query or None, body)

    @property
    def writes(self):
        return [call for call in self.calls if call[0] != "GET"]

    def connection(self, socket_path, timeout):
        return _Connection(self)


class _Response:
    def __init__(self, value):
        self.status, self.reason = (value.status, "Error") if isinstance(value, Status) else (200, "OK")
        payload = {"message": value.message} if isinstance(value, Status) else value
        self._raw = b"" if payload is None else json.dumps(payload).encode()

    def read(self):
        return self._raw

    def getheader(self, name, default=None):
        return "application/json" if name == "Content-Type" else default


class _Connection:
    def __init__(self, docker):
        self.docker = docker
        self.response = None

    def request(self, method, url, body=None, headers=None):
        self.response = _Response(self.docker.handle(method, url, body))

    def getresponse(self):
        return self.response

    def close(self):
        pass


# --- one module run ----------------------------------------------------------------


class Exited(Exception):
    pass


class Done:
    """What one main() returned: ``result`` (the exit_json or fail_json keywords), ``failed``,
    ``msg``, ``warnings``, and the scripted seams with their recorded calls."""

    def __init__(self, commands, docker):
        self.commands, self.docker = commands, docker
        self.result, self.failed, self.warnings = {}, None, []

    @property
    def msg(self):
        return self.result.get("msg", "")

    @property
    def changed(self):
        return self.result.get("changed")


def run_main(monkeypatch, mod, params, check=False, diff=False, commands=(), docker=None, missing=()):
    """One main() of ``mod`` with ``params``; ``missing`` names programs get_bin_path does not find."""
    commands = commands if isinstance(commands, Commands) else Commands(commands)
    docker = docker if docker is not None else Docker()
    done = Done(commands, docker)

    def finish(failed):
        def record(self, msg=None, **kwargs):
            done.result, done.failed = dict(kwargs), failed
            if msg is not None:
                done.result["msg"] = msg
            raise Exited
        return record

    def get_bin_path(self, name, required=False, opt_dirs=None):
        if name in missing:
            if required:
                self.fail_json(msg=f"Failed to find required executable {name}")
            return None
        return f"/usr/sbin/{name}"

    monkeypatch.setattr(AnsibleModule, "exit_json", finish(False))
    monkeypatch.setattr(AnsibleModule, "fail_json", finish(True))
    monkeypatch.setattr(AnsibleModule, "warn", lambda self, text: done.warnings.append(text))
    monkeypatch.setattr(AnsibleModule, "get_bin_path", get_bin_path)
    monkeypatch.setattr(AnsibleModule, "run_command",
                        lambda self, argv, data=None, binary_data=False, **kw: commands(argv, data))
    monkeypatch.setattr(docker_api, "_UnixHTTPConnection", docker.connection)
    args = {"_ansible_check_mode": check, "_ansible_diff": diff, **params}
    with patch_module_args(args), pytest.raises(Exited):
        mod.main()
    return done


@pytest.fixture
def run_module(monkeypatch):
    """run_module(mod, params, check=False, diff=False, commands=(), docker=None, missing=()) -> Done."""
    return functools.partial(run_main, monkeypatch)
