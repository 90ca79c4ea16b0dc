# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Name the file and line of a YAML error in group_vars/ and host_vars/.

ansible-core 2.19's host_group_vars re-raises a parse error with its text
only, so a typo in group_vars/all/swarm.yml reads "YAML parsing failed"
with no file, at any verbosity. This plugin runs first (ansible.cfg,
vars_plugins_enabled), parses the same files with the same loader (the
result is cached, so host_group_vars does not parse them again) and raises
the error with its place. It returns no variables.
"""

from __future__ import annotations

DOCUMENTATION = """
    name: swarmfabric_yaml
    short_description: Names the file and line of a YAML error in group_vars and host_vars
    requirements:
        - Enabled in configuration, before host_group_vars
    description:
        - Parses the group_vars/ and host_vars/ files that host_group_vars loads, and raises a YAML
          error with its file, line and column. Returns no variables.
    extends_documentation_fragment:
      - vars_plugin_staging
"""

import os

from ansible.errors import AnsibleParserError
from ansible.inventory.group import InventoryObjectType
from ansible.plugins.vars import BaseVarsPlugin

# Directories and names already read without an error: Ansible asks again for every host at every task.
_CHECKED = set()


def _place(exc):
    """'file:line:column' of a parse error, or None."""
    origin = getattr(exc, 'obj', None)
    path, line = getattr(origin, 'path', None), getattr(origin, 'line_num', None)
    if not path or not line:
        return None
    column = getattr(origin, 'col_num', None)
    return f'{path}:{line}' + (f':{column}' if column else '')


def _context(exc):
    """PyYAML's 'while parsing ... at line N', when it says more than the message."""
    cause = exc.__cause__
    context, mark = getattr(cause, 'context', None), getattr(cause, 'context_mark', None)
    if context and mark is not None:
        return f' ({context} that starts at line {mark.line + 1}, column {mark.column + 1})'
    return ''


class VarsModule(BaseVarsPlugin):
    REQUIRES_ENABLED = True
    is_stateless = True

    def get_vars(self, loader, path, entities, cache=True):
        super().get_vars(loader, path, entities)
        for entity in entities if isinstance(entities, list) else [entities]:
            subdir = 'host_vars' if entity.base_type is InventoryObjectType.HOST else 'group_vars'
            where = os.path.join(os.path.realpath(path), subdir)
            if (where, entity.name) in _CHECKED or not os.path.isdir(where) or entity.name.startswith(os.path.sep):
                continue
            for found in loader.find_vars_files(where, entity.name):
                try:
                    loader.load_from_file(found, cache='all', unsafe=True, trusted_as_template=True)
                except AnsibleParserError as exc:
                    place = _place(exc)
                    if place is None:
                        raise
                    raise AnsibleParserError(f'Cannot read {place}: {exc.message}{_context(exc)}') from None
                except Exception:  # anything else is host_group_vars' to report, as it always did
                    continue
            _CHECKED.add((where, entity.name))
        return {}
