# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation shared by the modules in library/ (ansible-doc merges it in;
a module's own attribute entries override these)."""


class ModuleDocFragment:
    # Every module reads the live state, diffs it against the desired state,
    # then applies only the difference.
    DOCUMENTATION = r"""
attributes:
  check_mode:
    support: full
    description: Reads the live state and reports what would change, changing nothing.
  diff_mode:
    support: full
    description: Shows the live state as before and the desired state as after.
  idempotent:
    support: full
    description: A second run with the same options reports C(changed=false).
"""

    # Modules that talk to the Docker Engine API.
    DOCKER = r"""
options:
  socket:
    description: Path of the Docker Engine API unix socket.
    type: path
    default: /var/run/docker.sock
"""
