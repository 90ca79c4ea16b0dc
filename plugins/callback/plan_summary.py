# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A short human summary of what a run changed, or would change in check
mode, at its end, and the same as JSON (docs/gitops.md, "The plan summary")."""

from __future__ import annotations

DOCUMENTATION = r"""
name: plan_summary
type: aggregate
short_description: End a run with a short summary of what it changed (or would change)
description:
  - >-
    Collects the results of the toolkit's modules (swarm_cluster, swarm_service, swarm_node, the fabric and
    mesh modules) and ends the run with one line per changed object, such as
    C(service api: create (2 replicas, port 8081)), C(service web: replicas 3 → 4) or
    C(node node3: drain → active). In check mode (C(--check --diff)) that is the plan.
  - >-
    The summary is also written as JSON to O(path), or to the extra variable C(plan_summary) when given
    (C(-e plan_summary=PATH)).
  - >-
    Results of C(no_log) tasks stay hidden; such a change is named by its task only. Join tokens and
    unlock keys are masked in every line.
  - >-
    With a json stdout callback (C(ansible.posix.json)) nothing is printed, so that the output stays JSON;
    the file is still written.
  - >-
    A run that skipped its layers because nothing differs from the last complete converge
    (playbooks/converged.yml) says so, and a run that did not says why (the JSON's C(converged)).
  - >-
    A run that used none of the toolkit's converging modules and made no converged check (validate.yml,
    status.yml) prints and writes nothing.
  - >-
    Enable it with C(callbacks_enabled = swarmfabric.swarm.plan_summary) in ansible.cfg (the checkout's
    ansible.cfg enables it as C(plan_summary)).
options:
  path:
    description: Where the JSON summary is written (the extra variable C(plan_summary) takes precedence).
    type: path
    default: ~/.ansible/swarmfabric/plan-summary.json
    env:
      - name: SWARMFABRIC_PLAN_SUMMARY
    ini:
      - section: swarmfabric_plan_summary
        key: path
"""

import json
import os
import re
import tempfile

from ansible import constants as C
from ansible import context
from ansible.plugins.callback import CallbackBase

# The toolkit's modules whose changes the summary names.
TOOLKIT = {
    'swarm_cluster', 'swarm_service', 'swarm_node', 'swarm_network', 'swarm_backends', 'swarm_backends_record',
    'vxlan_overlay', 'xfrm_tunnel', 'mesh_ruleset', 'nft_table', 'fabric_capabilities', 'swarm_object',
    'docker_overlay', 'host_files',
}
# Bookkeeping of the run itself, not a change to the swarm.
IGNORED = {'swarm_lock'}
HIDDEN = 'changed (details hidden: no_log)'
OWN_LABELS = 'io.swarmfabric.'
ARROW = '→'
_SECRET = re.compile(r'SWM(TKN|KEY)-[A-Za-z0-9+/=_-]+')


def mask(text):
    """A line with every swarm join token and unlock key masked."""
    return _SECRET.sub('SWM\\1-********', str(text))


def fmt(value):
    """A value as a person reads it."""
    if value is None:
        return 'none'
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return '{' + ', '.join(f'{k}: {fmt(v)}' for k, v in sorted(value.items())) + '}'
    if isinstance(value, (list, tuple)):
        return '[' + ', '.join(fmt(v) for v in value) + ']'
    return str(value)


def fmt_ports(ports):
    """Published ports as swarm_service reports them, in Compose's words ('8080:80/tcp ingress',
    '8081:81/tcp host'), as 'port 8080' / 'ports 80, 53/udp, 8081 host-mode'."""
    out = []
    for port in ports or []:
        match = re.fullmatch(r'(?:(\d+):)?(\d+)/(\w+) (\w+)', str(port))
        if not match:
            out.append(str(port))
            continue
        published, target, proto, mode = match.groups()
        out.append(f"{published or target}{'' if proto == 'tcp' else '/' + proto}"
                   f"{' host-mode' if mode == 'host' else ''}")
    if not out:
        return 'no port'
    return ('port ' if len(out) == 1 else 'ports ') + ', '.join(out)


def _service_field(key, before, after):
    if key == 'deploy.replicas':
        return f'replicas {fmt(before)} {ARROW} {fmt(after)}'
    return f'{key} {fmt(before)} {ARROW} {fmt(after)}'


def _changes(result):
    """A module's before/after per field: its 'changes', or its diff."""
    changes = result.get('changes')
    if isinstance(changes, dict) and all(isinstance(v, dict) and 'after' in v for v in changes.values()):
        return changes
    diff = result.get('diff')
    if isinstance(diff, dict) and isinstance(diff.get('before'), dict) and isinstance(diff.get('after'), dict):
        before, after = diff['before'], diff['after']
        return {k: {'before': before.get(k), 'after': after.get(k)} for k in sorted(set(before) | set(after))
                if before.get(k) != after.get(k)}
    return {}


def service_entries(result, args):
    name = args.get('name') or '?'
    if args.get('stack') and args.get('name'):
        name = f"{args['stack']}_{name}"
    state = args.get('state') or 'present'
    if state == 'pruned':
        return [(f'service {n}', 'remove (not in the description)') for n in result.get('removed') or []]
    if state == 'absent':
        return [(f'service {name}', 'remove')]
    changes = _changes(result)
    if changes and all(v.get('before') is None for v in changes.values()):
        after = {k: v['after'] for k, v in changes.items()}
        mode = after.get('deploy.mode') or 'replicated'
        scale = f"{after.get('deploy.replicas')} replicas" if mode == 'replicated' else mode
        what = [scale, fmt_ports([v for k, v in sorted(after.items()) if k.startswith('ports[')])]
        if after.get('image'):
            what.append(f"image {after['image']}")
        return [(f'service {name}', f"create ({', '.join(what)})")]
    if changes:
        return [(f'service {name}', '; '.join(_service_field(k, v.get('before'), v.get('after'))
                                              for k, v in sorted(changes.items())))]
    return [(f'service {name}', a) for a in result.get('actions') or []]


def _user_labels(labels):
    return {k: v for k, v in (labels or {}).items() if not str(k).startswith(OWN_LABELS)}


def _node_fields(before, after):
    out = []
    if before.get('role') != after.get('role'):
        out.append(f"{before.get('role')} {ARROW} {after.get('role')}")
    if before.get('availability') != after.get('availability'):
        out.append(f"{before.get('availability')} {ARROW} {after.get('availability')}")
    old, new = _user_labels(before.get('labels')), _user_labels(after.get('labels'))
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            if key not in new:
                out.append(f'label {key} removed')
            elif key not in old:
                out.append(f'label {key}={new[key]} added')
            else:
                out.append(f'label {key} {old[key]} {ARROW} {new[key]}')
    return out


_CLUSTER_ACTIONS = [
    (re.compile(r'^promoted (\S+)$'), lambda m: f'worker {ARROW} manager'),
    (re.compile(r'^demoted (\S+)$'), lambda m: f'manager {ARROW} worker'),
    (re.compile(r'^set availability of (\S+) to (\S+)$'), lambda m: f'availability {ARROW} {m.group(2)}'),
    (re.compile(r'^set labels of (\S+) to (.*)$'), lambda m: f'labels {ARROW} {m.group(2)}'),
    (re.compile(r'^removed (.+) from the swarm$'), lambda m: 'remove from the swarm'),
    (re.compile(r'^drained (\S+) \(not in the description\)$'), lambda m: 'drain (not in the description)'),
]


def cluster_entries(result):
    diff = result.get('diff') if isinstance(result.get('diff'), dict) else {}
    before, after = diff.get('before') or {}, diff.get('after') or {}
    entries, described = [], set()
    for name in sorted(after):
        if name in before and isinstance(before[name], dict) and isinstance(after[name], dict):
            fields = _node_fields(before[name], after[name])
            if fields:
                entries.append((f'node {name}', '; '.join(fields)))
                described.add(name)
    for action in result.get('actions') or []:
        for pattern, text in _CLUSTER_ACTIONS:
            m = pattern.match(action)
            if m:
                if m.group(1) not in described or text(m).startswith(('remove', 'drain')):
                    entries.append((f'node {m.group(1)}', text(m)))
                break
        else:
            entries.append(('swarm', action))
    for name, texts in sorted((result.get('deferred') or {}).items()):
        for text in texts:
            entries.append((f'node {name}', f'deferred: {text}'))
    return entries


def entries_for(module, host, result, args=None, no_log=False, task=''):
    """(object, change) pairs of one changed result."""
    if no_log or 'censored' in result:
        return [(host, f'{task}: {HIDDEN}' if task else HIDDEN)]
    args = args if args is not None else (result.get('invocation') or {}).get('module_args') or {}
    if module == 'swarm_service':
        out = service_entries(result, args)
    elif module == 'swarm_cluster':
        out = cluster_entries(result)
    elif module == 'swarm_node':
        out = [(f'node {host}', a) for a in result.get('actions') or []]
    else:
        out = [(host, a) for a in result.get('actions') or []]
    return out or [(host, f'{task}: changed' if task else 'changed')]


def summarize(entries):
    """Lines, in the order seen: identical changes of several hosts on one line."""
    order, hosts = [], {}
    for e in entries:
        key = (e['change'], e['object'] if not e['host_scoped'] else None)
        if key not in hosts:
            order.append(key)
            hosts[key] = []
        if e['object'] not in hosts[key]:
            hosts[key].append(e['object'])
    return [mask(f"{', '.join(sorted(hosts[key]))}: {key[0]}") for key in order]


def machine_stdout(stdout_callback):
    """Whether the run's stdout is a machine format (json) that a summary printed after it would break."""
    return 'json' in str(stdout_callback or '').rsplit('.', 1)[-1]


def header(check_mode, count):
    if check_mode:
        return f'Plan (check mode, nothing was changed): {count} change' + ('s' if count != 1 else '')
    return f'Changes made: {count}'


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'swarmfabric.swarm.plan_summary'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.entries = []
        self.failed = []
        self.unreachable = []
        self.toolkit_ran = False
        self.playbook = ''
        self.extra_path = None
        self.itemized = set()
        self.converged = None

    def v2_playbook_on_start(self, playbook):
        self.playbook = os.path.basename(getattr(playbook, '_file_name', '') or '')

    def v2_playbook_on_play_start(self, play):
        try:
            extra = play.get_variable_manager().extra_vars
        except AttributeError:
            extra = {}
        if extra.get('plan_summary'):
            self.extra_path = str(extra['plan_summary'])

    @staticmethod
    def _module(task):
        action = getattr(task, 'resolved_action', None) or task.action or ''
        return str(action).rsplit('.', 1)[-1]

    def _record(self, result, one_item=False):
        task, host, res = result._task, result._host.get_name(), result._result
        module = self._module(task)
        if module in IGNORED:
            return
        verdict = (res.get('ansible_facts') or {}).get('swarmfabric_converged')
        if module == 'set_fact' and isinstance(verdict, dict):
            self.converged = {'converged': bool(verdict.get('converged')),
                              'reasons': list(verdict.get('reasons') or [])}
            self.toolkit_ran = True
        # A loop's items come one by one (with the host each was delegated to), then
        # once more in the task's results, which carry no delegation: those are skipped.
        key = (getattr(task, '_uuid', None) or id(task), host)
        if one_item:
            self.itemized.add(key)
        elif key in self.itemized and isinstance(res.get('results'), list):
            return
        items = res.get('results') if isinstance(res.get('results'), list) and not one_item else [res]
        for item in items:
            if not isinstance(item, dict):
                continue
            # A delegated task (a loop over other hosts) ran on the delegated host: its name when
            # Ansible gives it, else the task's delegate_to once templated, else its address.
            delegated = item.get('_ansible_delegated_vars') or {}
            target = str(getattr(task, 'delegate_to', '') or '')
            where = (delegated.get('ansible_delegated_host')
                     or (target if delegated and '{' not in target else '')
                     or delegated.get('ansible_host') or host)
            args = (item.get('invocation') or {}).get('module_args') or {}
            if module in TOOLKIT and args.get('state') != 'query':
                self.toolkit_ran = True
            if not item.get('changed'):
                continue
            for obj, change in entries_for(module, where, item, args, bool(task.no_log), task.get_name()):
                self.entries.append({'object': obj, 'change': change, 'host': where, 'module': module,
                                     'task': task.get_name(), 'host_scoped': obj == where})

    def v2_runner_on_ok(self, result):
        self._record(result)

    def v2_runner_item_on_ok(self, result):
        self._record(result, one_item=True)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if not ignore_errors:
            self.failed.append({'host': result._host.get_name(), 'task': result._task.get_name()})

    def v2_runner_on_unreachable(self, result):
        host = result._host.get_name()
        if host not in self.unreachable:
            self.unreachable.append(host)

    def v2_playbook_on_stats(self, stats):
        if not self.toolkit_ran:
            return
        check_mode = bool(context.CLIARGS.get('check'))
        lines = summarize(self.entries)
        out = [header(check_mode, len(lines))] + [f'  {line}' for line in lines]
        if self.converged and self.converged['converged']:
            out.append('  converged: every host is as its last complete converge left it; the layers were skipped')
        if self.unreachable:
            out.append('  not reached: ' + ', '.join(sorted(self.unreachable)))
        if self.failed:
            out.append('  failed: ' + '; '.join(f"{f['host']} ({f['task']})" for f in self.failed))
        # A json stdout is read by programs: the summary goes to the file only.
        show = not machine_stdout(getattr(C, 'DEFAULT_STDOUT_CALLBACK', ''))
        if show:
            self._display.banner('SWARMFABRIC SUMMARY')
            for line in out:
                self._display.display(line)
        report = {
            'playbook': self.playbook,
            'check_mode': check_mode,
            'lines': lines,
            'changes': [{k: (mask(v) if isinstance(v, str) else v) for k, v in e.items() if k != 'host_scoped'}
                        for e in self.entries],
            'unreachable': sorted(self.unreachable),
            'failed': self.failed,
            'converged': self.converged,
        }
        path = os.path.expanduser(self.extra_path or self.get_option('path'))
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix='.plan-summary.')
            with os.fdopen(fd, 'w') as f:
                json.dump(report, f, indent=2, ensure_ascii=False)
                f.write('\n')
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
            if show:
                self._display.display(f'  (written to {path})')
        except OSError as exc:
            self._display.warning(f'Cannot write the plan summary to {path}: {exc}')
