#!/usr/bin/python
# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: nft_table
short_description: Own exactly one nftables table, applied in one transaction
description:
  - Reads the live table with C(nft list table), compares it, normalized, with
    the desired O(definition) and applies the difference in one C(nft -f)
    transaction. Other tables are never read for the compare nor touched.
  - A change to set or map elements or to the rules of existing chains is
    applied as a small delta (C(add element), C(delete element), C(flush chain)
    plus C(add rule)). Anything else (a new chain hook, table flags, stateful
    objects) redefines the whole table in one transaction (C(table X {}),
    C(delete table X), then the definition), which is still atomic.
  - Every script goes to the kernel as one C(nft -f) transaction, which nft
    validates whole and commits all or nothing. In check mode only
    C(nft -c -f) runs, so check mode also proves that the definition loads.
  - The compare forgives whitespace, line wrapping, comments, counter values
    and the order of set and map elements, but nothing else. Render the
    definition in the canonical form that C(nft list table) prints (for example
    C(priority dstnat), C(0x00004000), C(dnat ip to)); a definition in another
    spelling loads fine but reports C(changed) on every run.
author: Swarmfabric contributors
options:
  name:
    description: Name of the table.
    type: str
    required: true
  family:
    description: Address family of the table.
    type: str
    default: inet
    choices: [inet, ip, ip6, arp, bridge, netdev]
  definition:
    description:
      - The whole table as C(table <family> <name> { ... }) text, usually
        rendered from a template. It must declare this very table.
      - Required when O(state=present).
    type: str
  state:
    description: Whether the table exists with exactly this definition, or not at all.
    type: str
    default: present
    choices: [present, absent]
attributes:
  check_mode:
    support: full
    description: Runs C(nft -c) on the transaction it would apply, nothing else.
  diff_mode:
    support: full
    description:
      - Before and after in a canonical one-rule-per-line form, so the diff
        shows the rule and element lines added and removed.
requirements:
  - nft (nftables) on the managed host
extends_documentation_fragment:
  - swarmfabric
"""

EXAMPLES = r"""
- name: Firewall table of the engine layer
  nft_table:
    name: swarmfabric_engine
    family: inet
    definition: "{{ lookup('ansible.builtin.template', 'engine.nft.j2') }}"

- name: Remove a table we no longer use
  nft_table:
    name: swarmfabric_old
    family: ip
    state: absent
"""

RETURN = r"""
changed:
  description: Whether the live table differed from the desired one (in check mode, would differ).
  returned: always
  type: bool
actions:
  description: What was (or would be) done, one short line per step.
  returned: always
  type: list
  elements: str
  sample: ["map services: 1 elements added, 1 removed", "replaced the 2 rules of chain svc-web-tcp-80"]
lines_added:
  description: Rule and element lines added, counted on the canonical form.
  returned: always
  type: int
lines_removed:
  description: Rule and element lines removed, counted on the canonical form.
  returned: always
  type: int
script:
  description: The C(nft -f) transaction that was applied (or validated in check mode); empty when nothing changed.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.swarmfabric.module import Change, Runner
from ansible.module_utils.swarmfabric.nft import NftError, canonical_text, converge_table, line_changes


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "family": {"type": "str", "default": "inet", "choices": ["inet", "ip", "ip6", "arp", "bridge", "netdev"]},
            "definition": {"type": "str"},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
        },
        required_if=[("state", "present", ["definition"])],
        supports_check_mode=True,
    )
    params = module.params
    table = f"{params['family']} {params['name']}"
    change = Change(module, headers=(f"nft table {table} (live)", f"nft table {table} (desired)"))
    runner = Runner(module)
    # One nft -f is one kernel transaction, so the apply is its own validation;
    # check mode runs only nft -c (converge_table picks it), which writes nothing.
    try:
        result = converge_table(runner.status, runner.path("nft"), params["family"], params["name"],
                                params["definition"], params["state"], change.check_mode)
    except NftError as exc:
        change.fail(f"apply table {table}", exc)
    change.actions = result.pop("actions")
    before, after = result.pop("before"), result.pop("after")
    change.before, change.after = canonical_text(before), canonical_text(after)
    result["lines_added"], result["lines_removed"] = line_changes(before, after) if result["changed"] else (0, 0)
    result.setdefault("script", "")
    change.exit(**result)


if __name__ == "__main__":
    main()
