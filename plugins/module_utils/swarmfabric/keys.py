"""ESP key material and SPIs for the encrypted fabric.

HKDF-SHA256 (RFC 5869) from the standard library. One master secret per
swarm; each (overlay, source, destination, generation) gets its own 36-byte
AEAD key (32-byte AES key + 4-byte salt for rfc4106), so the two directions
of a pair never share a key and a rotation never reuses one.

SPIs are public (they travel in clear) and carry no secret: the high byte is
the key generation, the low 24 bits a hash of (overlay, VNI, source,
destination). A live SA therefore says which overlay and generation it
belongs to, which is how the modules find their own SAs and the current
generation without any state file.
"""

import hashlib
import hmac

HASH_LEN = 32
SA_KEY_LEN = 36  # AES-256 key + 32-bit salt
SALT = b"swarmfabric/fabric/v1"
MAX_GENERATION = 255  # generations live in one byte and wrap 255 -> 1


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


def check_generation(generation):
    generation = int(generation)
    if not 1 <= generation <= MAX_GENERATION:
        raise ValueError(f"key generation {generation} is out of range 1..{MAX_GENERATION}")
    return generation


def next_generation(generation):
    return check_generation(generation) % MAX_GENERATION + 1


def sa_label(overlay, vni, src, dst):
    return f"{overlay}|{int(vni)}|{src}|{dst}".encode()


def sa_key(secret, overlay, vni, src, dst, generation):
    """The 36-byte AEAD key for traffic from ``src`` to ``dst``."""
    if not secret:
        raise ValueError("the fabric master secret is empty")
    info = b"esp-aead|" + sa_label(overlay, vni, src, dst) + b"|" + str(check_generation(generation)).encode()
    return hkdf(_bytes(secret), SALT, info, SA_KEY_LEN)


def spi_suffix(overlay, vni, src, dst):
    digest = hashlib.sha256(b"swarmfabric-spi|" + sa_label(overlay, vni, src, dst)).digest()
    return int.from_bytes(digest[:3], "big")


def sa_spi(overlay, vni, src, dst, generation):
    return check_generation(generation) << 24 | spi_suffix(overlay, vni, src, dst)


def spi_generation(spi):
    return int(spi) >> 24


def is_own_spi(spi, overlay, vni, src, dst):
    """Whether a live SA with this SPI and these addresses is ours for this overlay."""
    return spi_generation(spi) >= 1 and int(spi) & 0xFFFFFF == spi_suffix(overlay, vni, src, dst)


def sa_reqid(vni, generation):
    """reqid ties the out policy to one generation's SA (and names the overlay)."""
    return int(vni) << 8 | check_generation(generation)


def reqid_generation(reqid, vni):
    reqid = int(reqid)
    if reqid >> 8 != int(vni):
        return None
    return reqid & 0xFF


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


PHASES = ("converge", "add_inbound", "switch_outbound", "retire_old")


def plan_generations(phase, generation, live_sa_gens, live_policy_gen):
    """Which generations of SAs to keep and which one the out policy uses.

    Zero-loss rotation from G to N runs each phase on every host before the
    next phase starts: add_inbound installs N's SAs (the out policy still
    selects G), switch_outbound points the out policy at N, retire_old
    removes every other generation. Between any two phases every host can
    receive every generation any peer may still send.
    ``generation`` is the target generation (None: the live one, or 1).
    """
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase}")
    live_sa_gens = set(live_sa_gens)
    if generation is None:
        if phase != "converge":
            raise ValueError(f"phase {phase} needs an explicit generation")
        generation = live_policy_gen or 1
    generation = check_generation(generation)
    if phase == "converge":
        return live_sa_gens | {generation}, generation
    if phase == "add_inbound":
        return live_sa_gens | {generation}, live_policy_gen or generation
    if phase == "switch_outbound":
        return live_sa_gens | {generation}, generation
    return {generation}, generation
