# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a long command on the controller and show its progress while it runs.

Ansible shows a task's output only when the task ends. This action runs the
command itself (on the controller: the labs' builds and boots run there) and
prints, as they come, the lines that match ``show``, each prefixed with
``label`` and the time since the start. When nothing matched for
``heartbeat`` seconds, it says again what it is doing, with the time. Ansible
prints a worker's display lines live, in order with its own output.

Options: ``argv`` (list, required), ``chdir``, ``label``, ``show`` (a regular
expression; its group ``msg`` is what is printed, else the whole line;
default ``^@progress (?P<msg>.*)``), ``format`` (a str.format string
over the groups, instead of ``msg``), ``every`` (seconds: show at most one
line that often, the latest; default 0), ``heartbeat`` (seconds, default 15, 0:
never), ``env`` (variables added to the controller's environment). The result is the command's
``rc``, ``stdout``, ``stderr`` (the shown lines included) and ``seconds``;
a non-zero exit fails with the last lines of output.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time

from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

DEFAULT_SHOW = r'^@progress (?P<msg>.*)'
WIDTH = 110


def _reader(stream, name, out):
    for raw in iter(stream.readline, b''):
        out.put((name, to_text(raw, errors='surrogate_or_replace').rstrip('\n')))
    out.put((name, None))


def _line(label, text, seconds):
    text = ' '.join((f'{label}: {text}' if label else text).split())
    if len(text) > WIDTH:
        text = text[:WIDTH - 3] + '...'
    return f'{text} ({seconds} s)'


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        argv = args.get('argv')
        if not isinstance(argv, list) or not argv:
            return dict(result, failed=True, msg='Cannot run the command: argv must be a non-empty list')
        if self._task.check_mode:
            return dict(result, skipped=True, msg='skipped in check mode')
        label = str(args.get('label') or '')
        show = re.compile(str(args.get('show') or DEFAULT_SHOW))
        fmt = args.get('format')
        heartbeat = float(args.get('heartbeat', 15))
        every = float(args.get('every', 0))
        env = dict(os.environ, **{str(k): str(v) for k, v in (args.get('env') or {}).items()})
        started = time.monotonic()
        try:
            proc = subprocess.Popen([str(a) for a in argv], cwd=args.get('chdir') or None, env=env,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            return dict(result, failed=True, msg=f'Cannot run {argv[0]}: {exc}')
        lines = queue.Queue()
        for stream, name in ((proc.stdout, 'stdout'), (proc.stderr, 'stderr')):
            threading.Thread(target=_reader, args=(stream, name, lines), daemon=True).start()
        output = {'stdout': [], 'stderr': []}
        state = {'last': 'started', 'shown': started, 'pending': False}

        def show_last():
            state['shown'], state['pending'] = time.monotonic(), False
            display.display(_line(label, state['last'], int(state['shown'] - started)))

        open_streams = 2
        while open_streams:
            since = time.monotonic() - state['shown']
            if state['pending']:
                wait = max(0.0, every - since)
            else:
                wait = max(0.5, heartbeat - since) if heartbeat > 0 else None
            try:
                name, text = lines.get(timeout=wait)
            except queue.Empty:
                show_last()
                continue
            if text is None:
                open_streams -= 1
                continue
            output[name].append(text)
            match = show.search(text)
            if match:
                groups = match.groupdict()
                state['last'] = fmt.format(**groups) if fmt else groups.get('msg') or text
                state['pending'] = True
                if time.monotonic() - state['shown'] >= every:
                    show_last()
        if state['pending']:
            show_last()
        rc = proc.wait()
        seconds = round(time.monotonic() - started, 1)
        result.update(rc=rc, seconds=seconds, changed=True,
                      stdout='\n'.join(output['stdout']), stderr='\n'.join(output['stderr']))
        if rc != 0:
            tail = (output['stderr'] or output['stdout'])[-15:]
            result.update(failed=True, msg=f'Cannot {label or argv[0]}: exit {rc} after {seconds} s: '
                                           + ' | '.join(tail))
        return result
