#!/usr/bin/python
# Copyright: Swarmfabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: fabric_capabilities
short_description: Check that the kernel can run the (encrypted) VXLAN fabric
description:
  - Probes the kernel for VXLAN devices and, when O(encrypted) names any
    overlay, for xfrm, esp4, the AEAD C(rfc4106(gcm(aes))) with a 256-bit key,
    128-bit ICV and ESN, and the nftables C(meta secpath) match that the
    plaintext-drop rule needs.
  - The probes run in a throwaway network namespace (C(unshare --net)), so
    the module never changes the host. One C(ip -batch) and one C(nft) call
    suffice when everything is there; only a failed batch is followed by one
    call per probe, to name what is missing. Missing kernel modules are first requested with C(modprobe), best effort.
  - In check mode nothing runs and nothing loads (no C(modprobe), no
    C(unshare)); the module only reads which kernel modules are loaded,
    built in (C(/proc/modules), C(/sys/module), C(modules.builtin)) or
    installed for the running kernel (C(modules.dep)). It fails for a module
    that is certainly absent and lists in RV(unverified) what it could not
    decide from files; the real run probes those.
  - Fails with a message naming exactly what is missing. Run it before any
    other fabric task so that nothing is half-installed.
author: Swarmfabric contributors
options:
  encrypted:
    description: Names of the overlays that ask for encryption; empty means only VXLAN is checked.
    type: list
    elements: str
    default: []
  docker_encrypted:
    description:
      - Names of the Docker overlays (C(driver=docker)) marked encrypted. Docker encrypts them with ESP and
        rfc4106(gcm(aes)) too, but on a kernel without them it accepts the network and sends plaintext; the
        module refuses instead.
    type: list
    elements: str
    default: []
  docker_ingress:
    description:
      - Names of the services whose ports Docker's ingress publishes, or that have a VIP on a Docker overlay.
        Both need IPVS (ip_vs); Docker would leave the port unpublished. The module refuses instead.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    description:
      - Reads files only and starts no process. The prediction can be weaker
        than the real probes (a module that is installed but broken passes),
        never stronger.
  diff_mode:
    support: none
requirements:
  - iproute2, nftables and util-linux (unshare) on the managed host
extends_documentation_fragment:
  - swarmfabric
"""

EXAMPLES = r"""
- name: Check the kernel before building the fabric
  fabric_capabilities:
    encrypted: [appnet]
"""

RETURN = r"""
missing:
  description: What the kernel lacks, one line per capability (empty on success).
  returned: always
  type: list
  elements: str
unverified:
  description: In check mode, the kernel modules whose presence files could not tell (empty in a real run).
  returned: always
  type: list
  elements: str
probed:
  description: Whether the namespace probes ran (false in check mode).
  returned: always
  type: bool
actions:
  description: Always empty (the module only reads and probes in a throwaway namespace).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.swarmfabric.kernelcaps import (
    capability_cause,
    ipvs_missing,
    missing_capabilities,
    module_runner,
    predicted_missing,
)
from ansible.module_utils.swarmfabric.module import Change


def main():
    module = AnsibleModule(
        argument_spec=dict(encrypted=dict(type="list", elements="str", default=[]),
                           docker_encrypted=dict(type="list", elements="str", default=[]),
                           docker_ingress=dict(type="list", elements="str", default=[])),
        supports_check_mode=True,
    )
    change = Change(module, diff=False)
    overlays, docker = module.params["encrypted"], module.params["docker_encrypted"]
    ingress = module.params["docker_ingress"]
    run = None if module.check_mode else module_runner(module)
    if module.check_mode:
        missing, unverified = predicted_missing(encrypted=bool(overlays or docker))
    else:
        missing, unverified = missing_capabilities(run, encrypted=bool(overlays or docker)), []
    lacking_ipvs = ipvs_missing(run) if ingress else []
    extra = {"missing": missing + lacking_ipvs, "unverified": unverified, "probed": not module.check_mode}
    if docker and missing:
        change.fail(f"encrypt Docker overlay {', '.join(docker)}",
                    "this kernel lacks " + "; ".join(missing) + ". Docker would create the network and send its "
                    "traffic in plaintext; nothing was changed. Use a kernel with esp4 and rfc4106(gcm(aes)), or set "
                    "encrypted: false for this overlay.", **extra)
    if lacking_ipvs:
        change.fail(f"publish through Docker's ingress for service {', '.join(ingress)}",
                    "this kernel lacks " + lacking_ipvs[0] + ". Docker would leave the port unpublished; nothing "
                    "was changed. Put the service on an overlay of the fabric (the mesh publishes its ports), use "
                    "ports with mode: host and deploy.endpoint_mode: dnsrr, or a kernel with ip_vs.", **extra)
    if missing:
        if overlays:
            change.fail(f"enable encryption on overlay {', '.join(overlays)}", capability_cause(missing), **extra)
        change.fail("build the VXLAN fabric", "this kernel lacks " + "; ".join(missing), **extra)
    if unverified:
        module.warn("Check mode could not tell from files whether the kernel has "
                    + ", ".join(unverified) + "; the real run probes them.")
    change.exit(changed=False, **extra)


if __name__ == "__main__":
    main()
