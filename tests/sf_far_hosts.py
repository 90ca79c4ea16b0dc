"""An inventory for tests that must never contact a host: localhost runs
locally, and every swarm host (group `far`) points at TEST-NET-1 over ssh,
so contacting one fails as UNREACHABLE."""


def far_inventory(count):
    """The inventory YAML with localhost and swarm hosts node1..node<count>."""
    hosts = ''.join(f'        node{i}: {{ansible_host: 192.0.2.{i}, ansible_connection: ssh}}\n'
                    for i in range(1, count + 1))
    return ('all:\n  hosts:\n'
            '    localhost: {ansible_connection: local, ansible_python_interpreter: "{{ ansible_playbook_python }}"}\n'
            '  children:\n    far:\n      hosts:\n' + hosts)
