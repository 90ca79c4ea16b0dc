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
generation (config-only networks; Docker refuses labels on a network built
ConfigFrom, so swarm networks are known by name, see generation_of); an
unlabelled network with the plain name is generation 0.
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


def _label_generation(net, overlay):
    tags = net.get("Labels") or {}
    if tags.get(OVERLAY_LABEL) != overlay:
        return None
    try:
        return int(tags.get(GENERATION_LABEL, "0"))
    except ValueError:
        return None


def generation_of(net, overlay, kind, configs=None):
    """The generation of ``net`` if it is one of ``overlay``'s networks of ``kind`` ('swarm' or 'config'), else None.

    A config-only network says it in its labels (unlabelled with the plain
    name: 0). Docker refuses labels on a network built ConfigFrom, so a swarm
    network is known by its name and its config network's name: ``appnet-<n>``
    from ``appnet-config-<n>`` is n (odd); ``appnet`` from ``appnet-config``
    takes the label of that config network in ``configs`` (name -> network,
    this node's), 0 without one."""
    config_only = bool(net.get("ConfigOnly"))
    if kind == "config":
        if not config_only:
            return None
        gen = _label_generation(net, overlay)
        if gen is not None:
            return gen
        tags = net.get("Labels") or {}
        return 0 if OVERLAY_LABEL not in tags and net.get("Name") == names(overlay, 0)[1] else None
    if config_only or net.get("Scope") != "swarm":
        return None
    name, config_from = net.get("Name") or "", (net.get("ConfigFrom") or {}).get("Network")
    if name == overlay and config_from == names(overlay, 0)[1]:
        config = (configs or {}).get(config_from)
        gen = _label_generation(config, overlay) if config else None
        return gen if gen is not None and gen % 2 == 0 else 0
    suffix = name[len(overlay) + 1:] if name.startswith(overlay + "-") else ""
    if suffix.isdigit() and int(suffix) % 2 == 1 and config_from == names(overlay, int(suffix))[1]:
        return int(suffix)
    return None


def generations(nets, overlay, kind):
    """generation -> network, for ``overlay``'s networks of ``kind`` among a /networks listing.

    Two networks claiming one generation (never made by us) keep the first by name."""
    nets = sorted(nets or [], key=lambda n: n.get("Name") or "")
    configs = {n.get("Name"): n for n in nets if n.get("ConfigOnly")}
    found = {}
    for net in nets:
        gen = generation_of(net, overlay, kind, configs)
        if gen is not None and gen not in found:
            found[gen] = net
    return found


def current(nets, overlay):
    """The generation services attach to: the newest swarm network of the overlay (0 if there is none)."""
    gens = generations(nets, overlay, "swarm")
    return max(gens) if gens else 0
