"""Generations of an overlay's Docker networks (pure, standard library only).

Docker cannot change a network, and cannot delete a config-only network
while a swarm network is built from it, nor a swarm network while services
use it. So a node whose range or shim address moves gets a new generation:
config-only networks and a swarm network with new names, the services moved
onto it by one rolling update each, then the old generation removed.

Two sets of names and macvlan parents alternate (blue/green): even
generations use today's plain names (``appnet``, ``appnet-config``) on the
VXLAN device, odd ones ``appnet-<gen>``, ``appnet-config-<gen>`` on the host
shim (a macvlan of the same device: the kernel attaches children of a
macvlan to the real device, so both generations share one L2). Docker's
macvlan driver refuses two networks on one parent on a node, which is why
the parent alternates too. Generation 0 is what clusters had before
generations existed, so they do not churn. Labels name the overlay and the
generation; an unlabelled network with the plain name is generation 0.
"""

OVERLAY_LABEL = "io.swarmfabric.overlay"
GENERATION_LABEL = "io.swarmfabric.generation"


def names(overlay, generation):
    """(swarm network name, config-only network name) of a generation."""
    if generation % 2 == 0:
        return overlay, f"{overlay}-config"
    return f"{overlay}-{generation}", f"{overlay}-config-{generation}"


def parent(generation, device, shim):
    """The macvlan parent of a generation's config-only networks."""
    return device if generation % 2 == 0 else shim


def labels(overlay, generation):
    return {OVERLAY_LABEL: overlay, GENERATION_LABEL: str(generation)}


def generation_of(net, overlay, kind):
    """The generation of ``net`` if it is one of ``overlay``'s networks of ``kind`` ('swarm' or 'config'), else None."""
    config_only = bool(net.get("ConfigOnly"))
    if (kind == "config") != config_only or (kind == "swarm" and net.get("Scope") != "swarm"):
        return None
    tags = net.get("Labels") or {}
    if tags.get(OVERLAY_LABEL) == overlay:
        try:
            return int(tags.get(GENERATION_LABEL, "0"))
        except ValueError:
            return None
    if OVERLAY_LABEL not in tags and net.get("Name") == names(overlay, 0)[0 if kind == "swarm" else 1]:
        return 0
    return None


def generations(nets, overlay, kind):
    """generation -> network, for ``overlay``'s networks of ``kind`` among a /networks listing.

    Two networks claiming one generation (never made by us) keep the first by name."""
    found = {}
    for net in sorted(nets or [], key=lambda n: n.get("Name") or ""):
        gen = generation_of(net, overlay, kind)
        if gen is not None and gen not in found:
            found[gen] = net
    return found


def current(nets, overlay):
    """The generation services attach to: the newest swarm network of the overlay (0 if there is none)."""
    gens = generations(nets, overlay, "swarm")
    return max(gens) if gens else 0
