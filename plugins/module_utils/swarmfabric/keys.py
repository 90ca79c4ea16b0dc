"""ESP key material, SPIs and key epochs for the encrypted fabric.

HKDF-SHA256 (RFC 5869) from the standard library. The master secret stays
on the controller: it derives, for each host, the 2(N-1) keys of the host's
own pairs (``host_sas``) and passes only those to the host. Each key is
bound to the cluster, the overlay, the direction (source, destination), a
wide epoch and a per-install nonce, so no key is ever installed twice:

    info = "esp-aead|v2|<cluster>|<overlay>|<vni>|<src>|<dst>|<epoch>|<nonce>"

The nonce is fresh for each controller run and the same for both ends of
every SA installed in that run. An SA that is healthy (both ends hold the
same key, compared by fingerprint) is kept as it is; any other one is
installed anew with the run's nonce, so a host that lost its state (reboot)
never comes back to a key it had before, even when the epoch is the same.

SPIs and reqids are public and collision-free by construction:

    SPI   = spi_epoch(epoch) << 20 | overlay index << 16 | source slot
    reqid = epoch << 4 | overlay index

``spi_epoch`` is the epoch folded into 1..4095 (never 0, so an SPI is never
in RFC 4303's reserved 1..255); the full 28-bit epoch lives in the reqid,
which is what the out policy selects. Slots are unique per overlay (the
plan allocates them), the overlay index is unique per swarm, so at one
receiver two SAs share an SPI only if they have the same source, overlay
and epoch modulo 4095: two live epochs are always adjacent.
"""

import hashlib
import hmac

HASH_LEN = 32
SA_KEY_LEN = 36  # AES-256 key + 32-bit salt
SALT = b"swarmfabric/fabric/v2"
EPOCH_BITS = 28
MAX_EPOCH = (1 << EPOCH_BITS) - 1
INDEX_BITS = 4
MAX_INDEX = (1 << INDEX_BITS) - 1  # at most 16 encrypted overlays
SLOT_BITS = 16
MAX_SLOT = (1 << SLOT_BITS) - 1
SPI_EPOCH_MOD = (1 << (32 - INDEX_BITS - SLOT_BITS)) - 1  # 4095: the SPI's epoch field is 1..4095
FINGERPRINT_LEN = 16  # hex digits

PHASES = ("converge", "add_inbound", "switch_outbound", "retire_old")


# --- HKDF (RFC 5869) -------------------------------------------------------


def hkdf_extract(salt, ikm):
    if not salt:
        salt = bytes(HASH_LEN)
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand(prk, info, length):
    if length > 255 * HASH_LEN:
        raise ValueError("HKDF-SHA256 cannot produce more than 8160 bytes")
    okm = b""
    block = b""
    counter = 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def hkdf(ikm, salt, info, length):
    return hkdf_expand(hkdf_extract(salt, ikm), info, length)


def _bytes(value):
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


# --- epochs, SPIs, reqids --------------------------------------------------


def check_epoch(epoch):
    epoch = int(epoch)
    if not 1 <= epoch <= MAX_EPOCH:
        raise ValueError(f"key epoch {epoch} is out of range 1..{MAX_EPOCH}")
    return epoch


def next_epoch(epoch):
    """Epochs only move forward; 2**28 - 1 rotations is more than any cluster will see."""
    epoch = check_epoch(epoch)
    if epoch == MAX_EPOCH:
        raise ValueError(f"key epoch {epoch} is the last one")
    return epoch + 1


def _check(value, top, what):
    value = int(value)
    if not 0 <= value <= top:
        raise ValueError(f"{what} {value} is out of range 0..{top}")
    return value


def spi_epoch(epoch):
    return (check_epoch(epoch) - 1) % SPI_EPOCH_MOD + 1


def sa_spi(index, src_slot, epoch):
    """SPI of the SA from the node in ``src_slot`` (any destination) on overlay ``index``."""
    slot = _check(src_slot, MAX_SLOT, "node slot")
    if slot == 0:
        raise ValueError("node slot 0 is the gateway's, not a node's")
    return spi_epoch(epoch) << (INDEX_BITS + SLOT_BITS) | _check(index, MAX_INDEX, "overlay index") << SLOT_BITS | slot


def sa_reqid(index, epoch):
    """reqid ties the out policy to one epoch's SA of one overlay."""
    return check_epoch(epoch) << INDEX_BITS | _check(index, MAX_INDEX, "overlay index")


def reqid_epoch(reqid, index):
    """The epoch of an SA or out policy of overlay ``index``, or None if it is not one."""
    reqid = int(reqid)
    if reqid & MAX_INDEX != int(index) or not 1 <= reqid >> INDEX_BITS <= MAX_EPOCH:
        return None
    return reqid >> INDEX_BITS


def spi_fields(spi):
    """(epoch field, overlay index, source slot) of an SPI."""
    spi = int(spi)
    return spi >> (INDEX_BITS + SLOT_BITS), spi >> SLOT_BITS & MAX_INDEX, spi & MAX_SLOT


def is_own_sa(spi, reqid, index):
    """Whether a live SA with this SPI and reqid is one of overlay ``index``'s, in this layout."""
    epoch = reqid_epoch(reqid, index)
    if epoch is None:
        return False
    field, idx, slot = spi_fields(spi)
    return idx == int(index) and field == spi_epoch(epoch) and slot >= 1


def is_legacy_sa(spi, reqid, vni):
    """An SA of the v1 layout (SPI = generation << 24 | hash, reqid = VNI << 8 | generation)."""
    reqid, spi = int(reqid), int(spi)
    if is_own_sa(spi, reqid, reqid & MAX_INDEX):
        return False  # some overlay's SA in this layout
    return vni is not None and reqid >> 8 == int(vni) and spi >> 24 == reqid & 0xFF >= 1


def is_legacy_reqid(reqid, vni):
    return vni is not None and int(reqid) >> 8 == int(vni) and int(reqid) & 0xFF >= 1


def spi_collisions(sas):
    """SAs are dicts with dst and spi; returns sorted (dst, spi) pairs used more than once."""
    seen = set()
    clashes = set()
    for sa in sas:
        ident = (sa["dst"], int(sa["spi"]))
        if ident in seen:
            clashes.add(ident)
        seen.add(ident)
    return sorted(clashes)


# --- keys ------------------------------------------------------------------


def key_info(cluster, overlay, vni, src, dst, epoch, nonce):
    if not cluster:
        raise ValueError("the cluster name is empty")
    if not nonce:
        raise ValueError("the install nonce is empty")
    fields = ("esp-aead", "v2", cluster, overlay, int(vni), src, dst, check_epoch(epoch), nonce)
    return "|".join(str(f) for f in fields).encode("utf-8")


def sa_key(secret, cluster, overlay, vni, src, dst, epoch, nonce):
    """The 36-byte AEAD key for traffic from ``src`` to ``dst``, for one install."""
    if not secret:
        raise ValueError("the fabric master secret is empty")
    return hkdf(_bytes(secret), SALT, key_info(cluster, overlay, vni, src, dst, epoch, nonce), SA_KEY_LEN)


def fingerprint(key):
    """A short public name of a key (bytes or hex): both ends compare it, nobody learns the key."""
    if isinstance(key, str):
        key = bytes.fromhex(key.lower().removeprefix("0x"))
    return hashlib.sha256(b"swarmfabric-sa-fingerprint|" + key).hexdigest()[:FINGERPRINT_LEN]


# --- epochs over a rotation ------------------------------------------------


def plan_epochs(phase, target, healthy, live_policy_epoch):
    """Which epochs of one direction's SA to hold, and which one the out policy selects.

    Zero-loss rotation from G to N runs each phase on every host before the
    next starts: add_inbound installs N (the out policy still selects G),
    switch_outbound points the out policy at N, retire_old removes every
    other epoch. ``healthy`` are the epochs both ends hold with one key;
    they are kept (a converge never undoes half a rotation).
    """
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase}")
    target = check_epoch(target)
    healthy = set(healthy)
    if phase == "retire_old":
        return {target}, target
    epochs = healthy | {target}
    if phase == "add_inbound":
        return epochs, live_policy_epoch if live_policy_epoch in epochs else target
    return epochs, target


def cluster_epoch(live_epochs, floor=None):
    """The epoch a converge adopts: the highest any live host's out policies use (or ``floor``, or 1)."""
    known = [int(e) for e in live_epochs if e] + ([int(floor)] if floor else [])
    return check_epoch(max(known) if known else 1)


def rotation_epoch(live_epochs):
    """The epoch a rotation moves to: past every epoch any host still holds."""
    known = [int(e) for e in live_epochs if e]
    return next_epoch(max(known)) if known else 1


def _live_index(host_live, peer, direction):
    """{epoch: (spi, fingerprint)} of one host's live SAs toward/from ``peer``."""
    out = {}
    for sa in (host_live or {}).get("sas") or []:
        if sa["peer"] == peer and sa["direction"] == direction:
            out[int(sa["epoch"])] = (int(sa["spi"]), sa["fingerprint"])
    return out


def host_sas(secret, cluster, nonce, overlay, host, members, live, phase="converge", epoch=None):
    """Everything ``xfrm_tunnel`` needs on ``host`` for one overlay: its peers (with the epoch
    each out policy selects) and its SAs, each with a fresh key or the fingerprint of the
    healthy live key to keep.

    ``overlay``: name, vni, index. ``members``: host -> {underlay, slot} (every member).
    ``live``: host -> the read step's answer ({epoch, sas, outbound}) for each host in the
    play; a member absent from ``live`` is out of the play: its SAs and policies on
    ``host`` are kept as they are, never removed. ``epoch``: the rotation's target
    (None in a converge: the cluster's current epoch, from ``live``).
    """
    if epoch is None:
        if phase != "converge":
            raise ValueError(f"phase {phase} needs an explicit epoch")
        epoch = cluster_epoch(h.get("epoch") for h in live.values() if h)
    epoch = check_epoch(epoch)
    name, vni, index = overlay["name"], overlay["vni"], overlay["index"]
    me = members[host]
    mine = live.get(host) or {}
    peers, sas = [], []
    for peer in sorted(members):
        if peer == host or not members[peer].get("underlay"):
            continue
        other = members[peer]
        in_play = host in live and peer in live
        policy_epoch = None
        for src, dst, src_host, dst_host, direction in (
                (me, other, host, peer, "out"), (other, me, peer, host, "in")):
            own = _live_index(mine, other["underlay"], direction)
            if not in_play:
                # Out of the play: keep exactly what is live, never delete it.
                epochs, healthy = set(own), set(own)
                if direction == "out":
                    outbound = (mine.get("outbound") or {}).get(other["underlay"])
                    policy_epoch = outbound or (max(own) if own else epoch)
            else:
                sent = _live_index(live.get(src_host), dst["underlay"], "out")
                got = _live_index(live.get(dst_host), src["underlay"], "in")
                healthy = {e for e, spi_fp in sent.items()
                           if got.get(e) == spi_fp and spi_fp[0] == sa_spi(index, src["slot"], e)}
                live_pol = (mine.get("outbound") or {}).get(other["underlay"])
                epochs, pol = plan_epochs(phase, epoch, healthy, live_pol)
                if direction == "out":
                    policy_epoch = pol
            for e in sorted(epochs):
                entry = {"peer": other["underlay"], "direction": direction, "epoch": e,
                         "spi": sa_spi(index, src["slot"], e)}
                if e in healthy:
                    entry["spi"], entry["fingerprint"] = own[e]
                else:
                    entry["key"] = sa_key(secret, cluster, name, vni, src["underlay"], dst["underlay"],
                                          e, nonce).hex()
                sas.append(entry)
        peers.append({"address": other["underlay"], "epoch": policy_epoch})
    return {"epoch": epoch, "peers": peers, "sas": sas}


def broken_pairs(members, live):
    """Directions between two hosts of the play whose ends disagree: one end holds an SA
    the other lacks, or both hold one under different keys (a host that lost its state
    in a reboot, a rotation stopped half way). A pair that is new to both ends is not
    broken: it is simply installed. ``members`` and ``live`` as for ``host_sas``."""
    broken = []
    for src in sorted(members):
        for dst in sorted(members):
            if src == dst or src not in live or dst not in live:
                continue
            src_addr, dst_addr = members[src].get("underlay"), members[dst].get("underlay")
            if src_addr and dst_addr and (_live_index(live[src], dst_addr, "out")
                                          != _live_index(live[dst], src_addr, "in")):
                broken.append((src, dst))
    return broken


# --- from the plan and the read step (used by the controller's filters) ----


def overlay_index(overlays, name):
    """The overlay's index among the encrypted overlays of the plan, in VNI order."""
    encrypted = sorted((o["vni"], n) for n, o in overlays.items() if o.get("encrypted"))
    names = [n for _vni, n in encrypted]
    if name not in names:
        raise ValueError(f"overlay {name} is not encrypted")
    if len(names) > MAX_INDEX + 1:
        raise ValueError(f"{len(names)} encrypted overlays is more than the {MAX_INDEX + 1} the SPI layout holds")
    return names.index(name)


def overlay_members(overlay):
    """host -> {underlay, slot} of one planned overlay; slots must fit the SPI."""
    members = {}
    for host, member in overlay["members"].items():
        if not 1 <= int(member["slot"]) <= MAX_SLOT:
            raise ValueError(f"{host}'s slot {member['slot']} does not fit the SPI's {SLOT_BITS} bits")
        members[host] = {"underlay": member.get("underlay"), "slot": int(member["slot"])}
    return members


def live_by_host(reads, overlay):
    """host -> {epoch, sas, outbound} for one overlay, from each host's registered read step
    (a loop over overlays of xfrm_tunnel state=query). Hosts whose read failed or was
    skipped are left out: they count as out of the play."""
    live = {}
    for host, registered in (reads or {}).items():
        for result in (registered or {}).get("results") or []:
            if result.get("failed") or result.get("skipped") or (result.get("item") or {}).get("name") != overlay:
                continue
            live[host] = {"epoch": result.get("epoch"), "sas": result.get("live_sas") or [],
                          "outbound": result.get("outbound") or {}}
    return live
